import numpy as np
import pytest

from diffnorm.features import (
    COAST_CLASSES,
    analytic_channel,
    coast_classes,
    compute_features,
    grid_signed_distance,
    signed_distance,
)
from diffnorm.grid import Grid
from diffnorm.normalization import analytic_normalization
from tests.conftest import make_grid


def _brute_signed_distance(mask, metric, px, py, walls=True):
    """O(n²) reference: nearest opposite cell over all cells (with wrap), walls as land outside."""
    ny, nx = mask.shape
    jj, ii = np.mgrid[0:ny, 0:nx]
    out = np.zeros(mask.shape)
    for j in range(ny):
        for i in range(nx):
            dy = np.abs(jj - j)
            dx = np.abs(ii - i)
            if py:
                dy = np.minimum(dy, ny - dy)
            if px:
                dx = np.minimum(dx, nx - dx)
            d = dx + dy if metric == "manhattan" else np.hypot(dx, dy)
            other = mask != mask[j, i]
            best = d[other].min() if other.any() else np.inf
            if mask[j, i] and walls:
                if not py:
                    best = min(best, j + 1, ny - j)
                if not px:
                    best = min(best, i + 1, nx - i)
            out[j, i] = best if mask[j, i] else -best
    return out


@pytest.mark.parametrize("metric", ["manhattan", "euclidean"])
@pytest.mark.parametrize("px,py", [(False, False), (True, False), (False, True), (True, True)])
def test_signed_distance_matches_brute_force(metric, px, py):
    mask = make_grid(11, 13, px, py, seed=4, land=0.1).mask
    np.testing.assert_allclose(signed_distance(mask, metric, px, py), _brute_signed_distance(mask, metric, px, py))


def test_signed_distance_hand_case():
    mask = np.ones((5, 7), int)
    mask[2, 3] = 0  # one land cell in a doubly periodic ocean
    d = signed_distance(mask, "manhattan", True, True)
    assert d[2, 3] == -1 and d[2, 4] == 1 and d[1, 4] == 2
    assert d[0, 0] == 5  # wraps: |Δj| = 2, |Δi| = 3
    e = signed_distance(mask, "euclidean", True, True)
    assert e[1, 4] == pytest.approx(np.sqrt(2)) and e[0, 0] == pytest.approx(np.hypot(2, 3))
    # without periodicity the walls are coasts: the edge ring is at distance 1
    w = signed_distance(mask, "euclidean")
    assert np.all(w[0] == 1) and np.all(w[:, -1] == 1)
    nowall = signed_distance(mask, "manhattan", walls=False)
    assert nowall[0, 0] == 2 + 3


def test_signed_distance_without_land():
    d = signed_distance(np.ones((4, 6), int), "manhattan", True, True)
    assert np.all(d == 10)
    with pytest.raises(ValueError, match="metric"):
        signed_distance(np.ones((3, 3)), "chebyshev")
    with pytest.raises(ValueError, match="2-D"):
        signed_distance(np.ones(3))


def test_analytic_channel_and_feature_stack():
    grid = make_grid(9, 12, True, False, seed=1)
    a = analytic_channel(grid, 10)
    ref = analytic_normalization(grid, 10)
    np.testing.assert_array_equal(a[grid.mask], ref[grid.mask])
    assert np.all(a[~grid.mask] == 0)
    feats = compute_features(grid, 10)
    assert set(feats) >= {"distance_manhattan", "distance_euclidean", "analytic", "diff_x", "mask"}
    np.testing.assert_array_equal(feats["distance_euclidean"], grid_signed_distance(grid, "euclidean"))
    assert np.all(feats["diff_x"][~grid.active_x] == 0)
    assert all(f.shape == grid.shape and np.all(np.isfinite(f)) for f in feats.values())
    with pytest.raises(ValueError, match="unknown feature"):
        compute_features(grid, 10, ["salinity"])


@pytest.mark.parametrize("periodic_x", [False, True])
def test_coast_classes_by_hand(periodic_x):
    """A 5x6 basin drawn by hand: walls close the south and north edges (and the west/east ones unless periodic)."""
    rows = ["##.###",   # north edge (row 4)
            "##.###",
            "......",
            "#.....",
            "#.#..."]   # south edge (row 0)
    mask = np.array([[c == "." for c in r] for r in rows[::-1]])
    ones = np.ones(mask.shape)
    grid = Grid(mask, ones, ones, ones, periodic_x, False)
    names = np.array(COAST_CLASSES)[coast_classes(grid)]
    assert names[4, 2] == "dead end"  # north wall, land west and east
    assert names[3, 2] == "channel"   # land west and east
    assert names[0, 1] == "dead end"  # south wall, land west and east
    assert names[1, 1] == "straight"  # land west only
    assert names[2, 1] == "straight"  # land north only
    assert names[2, 0] == ("channel" if periodic_x else "dead end")  # land north and south; west wraps to (2, 5)
    assert names[0, 5] == "corner"    # south wall, and east: the west wall or, wrapped, land (0, 0)
    assert names[1, 3] == "open"
    assert (names[~mask] == "land").all()
    # brute force: count closed faces cell by cell
    ny, nx = mask.shape

    def ocean(jj, ii):
        if not 0 <= jj < ny:
            return False
        if not 0 <= ii < nx:
            if not periodic_x:
                return False
            ii %= nx
        return bool(mask[jj, ii])

    for j in range(ny):
        for i in range(nx):
            if not mask[j, i]:
                continue
            shut = [not ocean(j, i + 1), not ocean(j, i - 1), not ocean(j + 1, i), not ocean(j - 1, i)]
            n = sum(shut)
            want = {0: "open", 1: "straight", 3: "dead end", 4: "isolated"}.get(n)
            if n == 2:
                want = "channel" if shut[:2] == [True, True] or shut[2:] == [True, True] else "corner"
            assert names[j, i] == want, (j, i)
