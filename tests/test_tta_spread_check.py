"""benchmarks/tta_spread_check.py: the flips' spread scored as an error indicator, on hand-made cases."""

import sys
import warnings
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


def test_view_noise_of_a_shared_error_is_zero():
    """Four identical views that all miss by the same amount: nothing for averaging to remove."""
    truth = np.linspace(-1.0, 1.0, 2000)
    logs = np.tile(truth + 0.03, (4, 1))
    logs[:, 7] -= 0.2  # the worst cell, missed low by all four
    n = spread_check.view_noise(logs, truth)
    assert n["share_all"] == 0 and n["share_tail"] == 0 and n["share_max"] == 0
    assert n["max_same_sign"]


def test_view_noise_hand_made_worst_cell():
    """Cell 1 is the worst (TTA error 0.1); its views 0.4, −0.2, 0.1, 0.1 disagree in sign: v = 0.06, v/4 = 0.015,
    share 0.015 / 0.01 = 1.5 there. With tail = 1/3 the tail is that cell alone."""
    truth = np.zeros(3)
    logs = np.array([[0.01, 0.4, 0.0], [0.01, -0.2, 0.0], [0.01, 0.1, 0.0], [0.01, 0.1, 0.0]])
    n = spread_check.view_noise(logs, truth, tail=1 / 3)
    assert n["share_max"] == pytest.approx(0.015 / 0.01)
    assert n["share_tail"] == pytest.approx(n["share_max"])
    assert not n["max_same_sign"]
    # all cells: noise (0 + 0.015 + 0) / 3 over squared errors (1e-4 + 0.01 + 0) / 3
    assert n["share_all"] == pytest.approx(0.015 / 0.0101)


def test_view_noise_recovers_a_known_split():
    """Views = truth + shared error (σ 0.01) + independent noise per view (σ 0.02): the TTA error's variance is
    1e-4 + 4e-4 / 4, half of it noise, so the share over all cells is 0.5 (200 000 cells: ±0.01)."""
    rng = np.random.default_rng(3)
    truth = rng.normal(size=200_000)
    shared = rng.normal(scale=0.01, size=truth.size)
    logs = truth + shared + rng.normal(scale=0.02, size=(4, truth.size))
    assert spread_check.view_noise(logs, truth)["share_all"] == pytest.approx(0.5, abs=0.01)


def test_view_noise_of_an_exact_field_is_undefined():
    """No error at all: the shares are 0/0 (NaN, without a warning) and no flip misses the worst cell."""
    truth = np.linspace(0.0, 1.0, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        n = spread_check.view_noise(np.tile(truth, (4, 1)), truth)
    assert np.isnan(n["share_all"]) and np.isnan(n["share_max"]) and not n["max_same_sign"]
