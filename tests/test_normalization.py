import numpy as np
import pytest

from diffnorm.grid import Grid
from diffnorm.metrics import sample_metrics
from diffnorm.normalization import (
    analytic_normalization,
    bruteforce_normalization,
    exact_normalization,
    image_normalization,
    normalize,
    randomized_normalization,
)
from diffnorm.operator import DiffusionOperator, stiffness_matrix
from tests.conftest import dense_gamma, make_grid


@pytest.mark.parametrize("steps", [2, 10])
def test_bruteforce_and_exact_match_dense(small_grid, steps):
    ref = dense_gamma(small_grid, steps)
    for gamma in (bruteforce_normalization(small_grid, steps, block=7), exact_normalization(small_grid, steps)):
        assert np.array_equal(np.isnan(gamma), ~small_grid.mask)
        np.testing.assert_allclose(gamma[small_grid.mask] ** 2, ref[small_grid.mask] ** 2, rtol=1e-10)


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("steps", [2, 10])
def test_probing_runs_and_matches_bruteforce_on_larger_grids(periodic, steps):
    # small diffusivities -> short kernels -> the lattice has far fewer probes than cells
    g = make_grid(48, 60, *periodic, seed=3, scale=0.1)
    gamma, report = exact_normalization(g, steps, algorithm="probing", return_report=True)
    assert report.algorithm == "probing" and report.n_probes < g.n_ocean / 3
    ref = bruteforce_normalization(g, steps)
    np.testing.assert_allclose(gamma[g.mask] ** 2, ref[g.mask] ** 2, rtol=1e-10)
    assert report.max_checked_error < 1e-10


def test_normalized_correlation_is_symmetric_with_unit_diagonal():
    g = make_grid(periodic_x=True)
    steps = 4
    gamma = exact_normalization(g, steps)[g.mask]
    K = stiffness_matrix(g).toarray()
    W = np.diag(g.area[g.mask])
    Lh = np.linalg.matrix_power(np.linalg.solve(W + K, W), steps // 2)
    C = np.diag(gamma) @ Lh @ np.linalg.inv(W) @ Lh.T @ np.diag(gamma)
    np.testing.assert_allclose(C, C.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(C), 1.0, rtol=1e-10)
    # the operator-based correlation agrees with the dense one
    op = DiffusionOperator(g, steps)
    np.testing.assert_allclose(op.apply_correlation(np.eye(g.n_ocean)[:, :4], gamma), C[:, :4], atol=1e-12)


def test_randomized_error_scales_like_sqrt_2_over_n():
    g = make_grid(20, 24, periodic_x=True, seed=5)
    ref = exact_normalization(g, 6)
    rmse = {}
    for n in (50, 800):
        est = randomized_normalization(g, 6, samples=n, seed=1, block=64)
        rmse[n] = sample_metrics(est, ref)["rmse"]
        # ε = v̂/v − 1 has variance 2/N for Gaussian samples (γ̂² ∝ 1/v̂, first order)
        assert 0.7 * np.sqrt(2 / n) < rmse[n] < 1.3 * np.sqrt(2 / n)
    assert 3.0 < rmse[50] / rmse[800] < 5.3  # sqrt(16) = 4
    # reproducible from the seed, different for another seed
    a = randomized_normalization(g, 6, samples=10, seed=7)
    np.testing.assert_array_equal(a, randomized_normalization(g, 6, samples=10, seed=7))
    assert not np.allclose(a[g.mask], randomized_normalization(g, 6, samples=10, seed=8)[g.mask])


def test_analytic_matches_exact_far_from_coasts():
    n = 44
    a = 4.0
    mask = np.ones((n, n))
    mask[:, :4] = 0  # a coast along the west
    g = Grid(mask, np.full((n, n), 2.0), np.full((n, n), a), np.full((n, n), a), periodic_x=False, periodic_y=True)
    exact, analytic = exact_normalization(g, 10), analytic_normalization(g, 10)
    far = np.zeros_like(g.mask)
    far[:, 20:28] = True
    np.testing.assert_allclose(analytic[far], exact[far], rtol=0.01)
    near = np.zeros_like(g.mask)
    near[:, 4] = True
    assert np.all(exact[near] / analytic[near] < 0.8)  # the wall halves the spread: analytic is wrong there


def test_normalize_dispatch_and_errors():
    g = make_grid()
    with pytest.raises(ValueError, match="unknown method"):
        normalize(g, 2, "magic")
    with pytest.raises(ValueError, match="even integer"):
        normalize(g, 3, "exact")
    with pytest.raises(ValueError, match="samples"):
        randomized_normalization(g, 2, samples=0)
    np.testing.assert_allclose(normalize(g, 2, "bruteforce"), normalize(g, 2, "exact"), rtol=1e-10)


# -- images: infinite lattice + coast images ------------------------------------------------------------


def _uniform(ny, nx, kx, ky, px, py, area=2.0):
    mask = np.ones((ny, nx), bool)
    return Grid(mask, np.full((ny, nx), area), np.full((ny, nx), area * kx), np.full((ny, nx), area * ky), px, py)


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("steps", [2, 10])
def test_images_exact_on_uniform_rectangles_and_tori(periodic, steps):
    """Images of a point across straight walls (and one period away) are exact for a uniform box."""
    g = _uniform(14, 17, 2.0, 1.4, *periodic)
    ref = dense_gamma(g, steps)
    got = image_normalization(g, steps, nodes=40, reflections=6)
    np.testing.assert_allclose(got[g.mask] ** 2, ref[g.mask] ** 2, rtol=2e-5)
    default = image_normalization(g, steps)  # the default quadrature: error below the approximation's own
    assert np.abs(default[g.mask] ** 2 / ref[g.mask] ** 2 - 1).max() < 2e-3


def test_images_isolated_cells_and_channels():
    """An isolated cell has γ² = W exactly; a closed one-cell-wide channel is a 1-D box: exact with images."""
    g = _uniform(9, 20, 1.5, 0.8, False, False)
    mask = np.zeros(g.shape, bool)
    mask[4, 2:18] = True  # channel along x
    mask[7, 5] = True  # isolated cell
    mask[1:3, 3:10] = True  # a 2 x 7 basin
    g2 = Grid(mask, g.area * (1 + np.arange(20) / 100), g.diff_x, g.diff_y, False, False)
    got = image_normalization(g2, 10, nodes=40, reflections=6)
    assert got[7, 5] == pytest.approx(np.sqrt(g2.area[7, 5]), rel=1e-12)
    uniform = Grid(mask, g.area, g.diff_x, g.diff_y, False, False)
    np.testing.assert_allclose(image_normalization(uniform, 10, nodes=40, reflections=6)[mask] ** 2,
                               dense_gamma(uniform, 10)[mask] ** 2, rtol=2e-5)


def test_images_beats_analytic_near_coasts(small_grid):
    ref = dense_gamma(small_grid, 10)
    m = small_grid.mask
    err_images = np.abs(image_normalization(small_grid, 10)[m] ** 2 / ref[m] ** 2 - 1).mean()
    err_analytic = np.abs(analytic_normalization(small_grid, 10)[m] ** 2 / ref[m] ** 2 - 1).mean()
    assert err_images < err_analytic / 3


@pytest.mark.parametrize("transform", ["flip_x", "flip_y", "rot90", "rot180", "rot270"])
def test_images_equivariant_under_grid_symmetries(transform):
    from diffnorm.transforms.augmentation import augment_cell_field, augment_grid

    g = make_grid(periodic_x=True, seed=3)
    a = augment_cell_field(image_normalization(g, 10), transform)
    b = image_normalization(augment_grid(g, transform), 10)
    np.testing.assert_allclose(b, a, rtol=1e-12, equal_nan=True)


def test_ive_integer_order_matches_scipy():
    from scipy.special import ive

    from diffnorm.normalization import _ive_integer_order

    order = np.arange(1, 301, dtype=float)[:, None]
    x = np.concatenate([[0.0], np.logspace(-4, 4, 200)])[None, :]
    ref, got = ive(order, x), _ive_integer_order(order, x)
    # n <= 2: SciPy's i0e/i1e and the recurrence I₂ = I₀ − (2/x)I₁ (SciPy's ive below x = 0.1)
    np.testing.assert_allclose(got[:2], ref[:2], rtol=1e-12, atol=0)
    rel = np.abs(got[2:] - ref[2:]) / np.maximum(ref[2:], 1e-300)
    assert rel[ref[2:] > 1e-30].max() < 3e-4  # single precision below: terms added to sums of order 1e-3 – 1
    assert np.abs(got[2:] - ref[2:])[ref[2:] <= 1e-30].max() < 1e-30
    assert (got[:, 0] == 0).all()
    # the same numbers with no order <= 2 at all (no row split) and with an order per element (no rows)
    np.testing.assert_array_equal(_ive_integer_order(order[2:], x), got[2:])
    np.testing.assert_array_equal(_ive_integer_order(np.broadcast_to(order, got.shape).copy(), x), got)


def test_images_threaded_axes_give_the_same_result(monkeypatch):
    from diffnorm import normalization

    g = make_grid(30, 40, True, False, seed=9)
    monkeypatch.setattr(normalization, "IMAGES_PARALLEL_CELLS", 10**9)
    serial = image_normalization(g, 10)
    monkeypatch.setattr(normalization, "IMAGES_PARALLEL_CELLS", 0)
    np.testing.assert_array_equal(image_normalization(g, 10), serial)


# -- the images prior's wall factors (CNN input channels) ---------------------------------------------------


def test_wall_factors_zero_without_walls_and_exact_with_walls_along_one_axis():
    from diffnorm.normalization import image_wall_factors

    torus = _uniform(60, 64, 1.3, 0.7, True, True)  # periods beyond the images' reach: no wall at all
    for f in image_wall_factors(torus, 10):
        np.testing.assert_array_equal(f, 0.0)
    small = _uniform(12, 16, 1.3, 0.7, True, True)  # a small torus: its periodic images, alike for every cell
    for f in image_wall_factors(small, 10):
        assert f[0, 0] > 0
        np.testing.assert_allclose(f, f[0, 0], rtol=1e-12)
    box = _uniform(60, 30, 1.3, 0.7, False, True)  # walls at the west and east ends only (a long period in y)
    gamma = image_normalization(box, 10)
    wx, wy = image_wall_factors(box, 10)
    np.testing.assert_array_equal(wy, 0.0)
    assert (wx > 0).all() and wx[0, 0] > 0.5 and wx[0, 15] < 1e-3  # ln 2-ish at the wall, 0 in the middle
    # with walls along x only the prior is exactly the free lattice times exp(wall_x): γ² e^{wx} is constant
    free = gamma**2 * np.exp(wx)
    np.testing.assert_allclose(free, free[0, 15], rtol=1e-12)


def test_wall_factors_swap_under_a_transpose_and_reuse_the_prior():
    from diffnorm.normalization import _WALL_FACTORS, image_wall_factors
    from diffnorm.transforms.augmentation import augment_cell_field, augment_grid

    g = make_grid(periodic_x=False, seed=5)
    image_normalization(g, 10)
    series = _WALL_FACTORS[g][10]
    stored = image_wall_factors(g, 10)
    assert series.walls is stored and image_wall_factors(g, 10) is stored  # from the prior's own series, once
    wx, wy = image_wall_factors(g, 10)
    tx, ty = image_wall_factors(augment_grid(g, "transpose"), 10)
    np.testing.assert_allclose(tx, augment_cell_field(wy, "transpose"), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ty, augment_cell_field(wx, "transpose"), rtol=1e-12, atol=1e-15)
    assert image_wall_factors(g, 4) is not stored  # another M: computed for it


def test_i0e_single_matches_scipy():
    from scipy.special import i0e

    from diffnorm.normalization import _i0e_single

    x = np.concatenate([[0.0], np.logspace(-6, 5, 2001), np.linspace(3.7, 3.8, 101)])
    got = _i0e_single(x)
    assert got.dtype == np.float64 and got[0] == 1.0
    np.testing.assert_allclose(got, i0e(x), rtol=1e-6, atol=0)
