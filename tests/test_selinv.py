"""Series selected inversion: truncated power-series arithmetic, the nested-dissection plan, and the exact
diagonal of S^{-M} against dense linear algebra and brute force."""

import numpy as np
import pytest

from diffnorm import normalization, selinv
from diffnorm.grid import Grid
from diffnorm.normalization import bruteforce_normalization, exact_normalization
from diffnorm.operator import DiffusionOperator
from tests.conftest import dense_gamma, make_grid


def _poly_matmul(a, b):
    """Textbook truncated product of matrix polynomials (coefficient-major arrays), coefficient by coefficient."""
    m = a.shape[0]
    out = np.zeros(a.shape[:2] + (a.shape[2], b.shape[3]))
    for k in range(m):
        for i in range(k + 1):
            out[k] += a[i] @ b[k - i]
    return out


def test_ring_matmul_and_inverse():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3, 4, 6)), rng.normal(size=(5, 3, 6, 2))  # 5 coefficients, batch of 3
    np.testing.assert_allclose(selinv.ring_matmul(a, b), _poly_matmul(a, b), atol=1e-12)
    p = rng.normal(size=(5, 2, 7, 7))
    p[0] += 8 * np.eye(7)
    x = selinv.ring_inv(p)
    identity = np.zeros_like(p)
    identity[0] = np.eye(7)
    np.testing.assert_allclose(_poly_matmul(p, x), identity, atol=1e-12)
    np.testing.assert_allclose(_poly_matmul(x, p), identity, atol=1e-12)


def test_resolvent_series_of_a_small_matrix():
    """(S − ν)^{-1} = Σ ν^k S^{-(k+1)}: the ring inverse of S − ν holds the inverse powers of S."""
    rng = np.random.default_rng(1)
    q = rng.normal(size=(6, 6))
    s = np.eye(6) + q @ q.T
    p = np.zeros((4, 1, 6, 6))
    p[0, 0], p[1, 0] = s, -np.eye(6)
    x = selinv.ring_inv(p)[:, 0]
    for k in range(4):
        np.testing.assert_allclose(x[k], np.linalg.matrix_power(np.linalg.inv(s), k + 1), atol=1e-13)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 1), (9, 7), (16, 31), (33, 20)])
@pytest.mark.parametrize("periodic", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("leaf", [1, 4, 24])
def test_plan_eliminates_every_ocean_cell_once(shape, periodic, leaf):
    mask = np.random.default_rng(shape[0]).random(shape) > 0.3
    plan = selinv.build_plan(mask, *periodic, leaf)
    n = mask.size
    eliminated = np.concatenate([g.out.ravel() for g in plan.groups])
    np.testing.assert_array_equal(np.sort(eliminated[eliminated < n]), np.flatnonzero(mask))
    assert plan.max_front <= leaf + 2 * (shape[0] + shape[1]) + 8  # a separator (or leaf), its boundary, padding
    assert selinv.build_plan(mask, *periodic, leaf) is plan  # cached per mask


@pytest.mark.parametrize("steps", [2, 4, 10])
def test_selinv_matches_dense_on_small_grids(small_grid, steps):
    """Coasts, an island, a one-cell bay, each periodic/closed combination (conftest.make_grid)."""
    ref = dense_gamma(small_grid, steps)
    m = small_grid.mask
    for leaf in (2, 24):
        sq = selinv.selinv_sq_norms(small_grid, steps, leaf=leaf, progress=leaf == 2)
        np.testing.assert_allclose(small_grid.area[m] / sq, ref[m] ** 2, rtol=1e-12)


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (True, True)])
def test_exact_selinv_matches_bruteforce_on_larger_grids(periodic):
    g = make_grid(40, 57, *periodic, seed=7, land=0.3)
    gamma, report = exact_normalization(g, 10, return_report=True)
    assert report.algorithm == "selinv" and report.checked_cells >= 16 and report.max_checked_error < 1e-12
    ref = bruteforce_normalization(g, 10)
    np.testing.assert_allclose(gamma[g.mask] ** 2, ref[g.mask] ** 2, rtol=1e-12)
    assert np.array_equal(np.isnan(gamma), ~g.mask)


def test_selinv_one_cell_wide_grids_and_isolated_cells():
    mask = np.array([[1, 1, 0, 1, 0, 1, 1, 1]], bool)  # one row: an isolated cell, a channel across the wrap
    rng = np.random.default_rng(3)
    g = Grid(mask, rng.uniform(1, 2, mask.shape), rng.uniform(0.1, 2, mask.shape), rng.uniform(0.1, 2, mask.shape),
             periodic_x=True, periodic_y=False)
    np.testing.assert_allclose(exact_normalization(g, 6, algorithm="selinv")[mask] ** 2,
                               dense_gamma(g, 6)[mask] ** 2, rtol=1e-12)
    assert exact_normalization(g, 6)[0, 3] ** 2 == pytest.approx(g.area[0, 3], rel=1e-12)  # isolated: γ² = W


def test_failed_check_falls_back_to_probing(monkeypatch):
    g = make_grid(20, 26, True, False, seed=2)
    ref = bruteforce_normalization(g, 6)
    real = selinv.selinv_sq_norms
    monkeypatch.setattr(selinv, "selinv_sq_norms", lambda grid, steps, progress: real(grid, steps) * (1 + 1e-6))
    gamma, report = exact_normalization(DiffusionOperator(g, 6), return_report=True)
    assert report.algorithm == "probing"
    np.testing.assert_allclose(gamma[g.mask] ** 2, ref[g.mask] ** 2, rtol=1e-10)


def test_auto_uses_probing_when_fronts_are_too_large(monkeypatch):
    g = make_grid(12, 14, seed=4)
    monkeypatch.setattr(normalization, "SELINV_MAX_MEMORY", 1000)
    _, report = exact_normalization(g, 4, return_report=True)
    assert report.algorithm == "probing"
    with pytest.raises(ValueError, match="unknown exact algorithm"):
        exact_normalization(g, 4, algorithm="magic")


def test_threaded_ring_products_give_the_same_result(monkeypatch):
    g = make_grid(20, 30, True, False, seed=5)
    serial = selinv.selinv_sq_norms(g, 10)
    monkeypatch.setattr(selinv, "PARALLEL_FLOPS", 0.0)  # every product through the thread pool
    np.testing.assert_array_equal(selinv.selinv_sq_norms(g, 10), serial)


def test_extreme_diffusivity_contrast_is_caught_by_the_check():
    """Roundoff grows with κ(S): with scale-free diffusivities up to 1e6 selinv misses 1e-12, the brute-force
    check (which includes the largest-diffusivity cells) notices and the answer still meets tol."""
    g = make_grid(20, 26, True, False, seed=1)
    rng = np.random.default_rng(0)
    g2 = Grid(g.mask, g.area, 10.0 ** rng.uniform(-6, 6, g.shape), 10.0 ** rng.uniform(-6, 6, g.shape), True, False)
    gamma, report = exact_normalization(g2, 10, return_report=True)
    assert report.algorithm == "probing"
    ref = bruteforce_normalization(g2, 10)
    np.testing.assert_allclose(gamma[g.mask] ** 2, ref[g.mask] ** 2, rtol=1e-12)


def test_thread_pool_is_fresh_after_fork():
    """A forked child (DataLoader workers) must not reuse the parent's pool, whose threads it does not have."""
    import multiprocessing as mp

    parent = selinv.thread_pool()
    list(parent.map(abs, [-1, 2]))
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        child_result = pool.apply_async(_pool_works_in_child).get(timeout=60)
    assert child_result == [1, 2]
    assert selinv.thread_pool() is parent


def _pool_works_in_child():
    return list(selinv.thread_pool().map(abs, [-1, 2]))
