import numpy as np
import pytest

from diffnorm.operator import DiffusionOperator, check_steps, stiffness_matrix
from tests.conftest import make_grid


@pytest.mark.parametrize("steps", [0, 1, 3, -2, 2.0, True, "4"])
def test_steps_must_be_even_and_at_least_two(steps):
    with pytest.raises(ValueError, match="even integer"):
        check_steps(steps)


def test_stiffness_is_symmetric_psd_with_constant_null_space(small_grid):
    K = stiffness_matrix(small_grid).toarray()
    np.testing.assert_allclose(K, K.T)
    assert np.linalg.eigvalsh(K).min() > -1e-12
    np.testing.assert_allclose(K @ np.ones(K.shape[0]), 0.0, atol=1e-12)  # no flux through coasts


def test_stiffness_hand_case():
    # 1x3 channel, faces a=2 (0-1) and b=3 (1-2); last face is a wall.
    from diffnorm.grid import Grid

    g = Grid(np.ones((1, 3)), np.ones((1, 3)), np.array([[2.0, 3.0, 99.0]]), np.full((1, 3), 7.0))
    expected = np.array([[2, -2, 0], [-2, 5, -3], [0, -3, 3]], dtype=float)
    np.testing.assert_allclose(stiffness_matrix(g).toarray(), expected)


@pytest.mark.parametrize("steps", [2, 6])
def test_operators_match_dense(small_grid, steps):
    op = DiffusionOperator(small_grid, steps)
    K = stiffness_matrix(small_grid).toarray()
    W = np.diag(op.w)
    L1 = np.linalg.solve(W + K, W)
    Lh = np.linalg.matrix_power(L1, steps // 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((op.grid.n_ocean, 3))
    np.testing.assert_allclose(op.apply_sqrt(x), Lh @ x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.apply_sqrt_transpose(x), Lh.T @ x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.apply(x[:, 0]), Lh @ Lh @ x[:, 0], rtol=1e-10, atol=1e-12)


def test_diffusion_conserves_mass_and_smooths():
    g = make_grid(periodic_x=True)
    op = DiffusionOperator(g, 4)
    x = np.zeros(g.n_ocean)
    x[5] = 1.0 / op.w[5]
    y = op.apply(x)
    assert np.all(y >= -1e-15)  # implicit diffusion is positivity preserving
    np.testing.assert_allclose(np.sum(op.w * y), 1.0)  # W-weighted mass is conserved
