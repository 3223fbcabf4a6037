"""benchmarks/cnn_error_by_latitude.py: mean and max |ε| per band of |latitude|, checked by hand."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cnn_error_by_latitude as lat_bench  # noqa: E402


def test_band_errors_by_hand():
    abs_lat = np.array([0.0, 59.9, 60.0, 65.0, 70.0, 90.0])
    eps = np.array([1.0, 3.0, 2.0, 4.0, 8.0, 16.0])
    got = lat_bench.band_errors(abs_lat, eps, (0, 60, 70, 80, 90))
    # [0, 60): 1, 3; [60, 70): 2, 4; [70, 80): 8; [80, 90] closed at the top: 16
    assert got[:2] == [(2, 2.0, 3.0), (2, 3.0, 4.0)]
    assert got[2] == (1, 8.0, 8.0) and got[3] == (1, 16.0, 16.0)


def test_empty_band_is_nan_and_shown_as_dash():
    got = lat_bench.band_errors(np.array([10.0, 20.0]), np.array([1e-3, 3e-3]), (0, 60, 90))
    assert got[0] == (2, 2e-3, 3e-3) and got[1][0] == 0 and math.isnan(got[1][1])
    row = lat_bench.format_row("set (1)", "70°", got)
    assert row == "| set (1) | 70° | 2.00e-03 / 3.00e-03 (100.0 %) | – |"


@pytest.mark.parametrize("bands", [(0,), (0, 60, 60, 90), (90, 0)])
def test_bad_bands_are_refused(bands):
    with pytest.raises(ValueError, match="increasing"):
        lat_bench.band_errors(np.zeros(3), np.zeros(3), bands)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        lat_bench.band_errors(np.zeros(3), np.zeros(4), (0, 90))


def test_polar_limit_from_manifest():
    assert lat_bench.polar_limit({"family": "sphere", "family_params": {"polar_limit": 77.0}}) == "77°"
    assert lat_bench.polar_limit({"family": "sphere", "family_params": {"res": 1.0}}) == "70°"
    assert lat_bench.polar_limit({"family": "box"}) == "–"
    assert lat_bench.band_labels((0, 60, 75.5)) == ["0–60°", "60–75.5°"]
