"""benchmarks/cnn_error_bias.py: bias tables, worst-cell signs and where field maxima lie, on hand-made errors."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bias = pytest.importorskip("cnn_error_bias")


def test_group_rows_give_signed_and_absolute_means():
    eps = np.array([0.02, -0.01, 0.03, -0.03, 0.001])
    groups = np.array([0, 0, 1, 1, 2])
    rows = bias.group_rows(eps, groups, {0: "a", 1: "b", 2: "c", 3: "empty"})
    assert len(rows) == 3  # the empty group has no row
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # group a: mean ε 0.005, mean |ε| 0.015, ratio 1/3, one of two positive, max 0.02
    assert cells[:2] == ["a", "2"] and float(cells[2]) == pytest.approx(0.005)
    assert float(cells[3]) == pytest.approx(0.015) and float(cells[4]) == pytest.approx(1 / 3, abs=1e-3)
    assert float(cells[5]) == 0.5 and float(cells[6]) == pytest.approx(0.02)
    b = [c.strip() for c in rows[1].strip("|").split("|")]
    assert float(b[2]) == 0.0 and float(b[4]) == 0.0  # symmetric errors: no bias


def test_worst_sign_shares_count_only_the_largest_errors():
    fields = [np.array([0.05, -0.04, 0.001, -0.002]), np.array([-0.1, -0.2, 0.3, 1e-4])]
    np.testing.assert_allclose(bias.worst_sign_shares(fields, 2), [0.5, 0.5])
    np.testing.assert_allclose(bias.worst_sign_shares(fields, 1), [1.0, 1.0])
    np.testing.assert_allclose(bias.worst_sign_shares(fields, 3), [1 / 3, 1 / 3])


def test_maxima_summary_locates_each_fields_worst_cell():
    names = ("land", "open", "straight")
    eps = [np.array([0.01, -0.05, 0.02]), np.array([0.3, 0.1, -0.2])]
    classes = [np.array([1, 2, 1]), np.array([1, 1, 2])]
    dists = [np.array([4, 1, 7]), np.array([9, 2, 1])]
    lats = [np.array([10.0, 65.0, 0.0]), np.array([45.0, 0.0, 0.0])]
    line = bias.maxima_summary(eps, classes, dists, lats, names)[0]
    # field 0: cell 1 (straight, 1 cell from land, 65°); field 1: cell 0 (open, 9 cells, 45°)
    assert "open 1, straight 1" in line
    assert "1 cell: 1" in line and "≥ 5 cells: 1" in line
    assert "40–55°: 1" in line and "62–70°: 1" in line and "0–40°: 0" in line
