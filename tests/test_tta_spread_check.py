"""benchmarks/tta_spread_check.py: the flips' spread scored as an error indicator, on hand-made cases."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
spread_check = pytest.importorskip("tta_spread_check")


def test_field_row_scores_a_hand_made_field():
    eps = np.array([0.05, 0.02, 0.001, 0.0005, 0.03, 1e-15])
    spread = np.array([0.04, 0.001, 0.002, 0.0001, 0.003, 0.0])  # the last cell is computed exactly
    r = spread_check.field_row(eps, spread, share=2 / 6, worst=2)
    # the two most uncertain cells are 0 and 4, which are also the two worst
    assert r["eps_max"] == 0.05 and r["worst_in_top"] == 2
    assert r["large"] == 3 and r["large_in_top"] == 2  # |ε| > 0.01: cells 0, 1, 4
    assert r["max_outside_top"] == 0.02  # cell 1
    assert r["above_3s"] == pytest.approx(3 / 5)  # cells 1, 3, 4 of the five the network predicts
    # the correlation leaves out the exactly computed cell (s = 0)
    assert r["corr_log"] == pytest.approx(np.corrcoef(np.log(eps[:5] + 1e-12), np.log(spread[:5]))[0, 1])


def test_the_four_flips_undo_themselves():
    """flip_log_gamma2 flips each prediction back: a predictor that returns the grid's own area shows no spread."""
    from tests.conftest import make_grid

    grid = make_grid(periodic_x=True)

    class AreaPredictor:
        def predict_grid(self, g):
            return np.where(g.mask, np.sqrt(g.area), np.nan)

    logs = spread_check.flip_log_gamma2(AreaPredictor(), grid)
    assert logs.shape == (4, *grid.shape)
    for k in range(4):
        np.testing.assert_allclose(logs[k][grid.mask], np.log(grid.area[grid.mask]), rtol=1e-12)
