"""Losses and target transforms: the relative loss is SPEC §3's mean ε², land never contributes."""

import numpy as np
import pytest
import torch

from diffnorm.losses import coast_weights, masked_mse, relative_loss, tail_mean
from diffnorm.metrics import relative_error, sample_metrics
from diffnorm.transforms.targets import TARGETS, TargetTransform


def _fields(seed=0, shape=(9, 11)):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) > 0.3
    gamma = np.where(mask, np.exp(rng.normal(10, 0.5, shape)), np.nan)
    est = np.where(mask, gamma * (1 + 0.05 * rng.standard_normal(shape)), np.nan)
    prior = np.where(mask, gamma * np.exp(0.2 * rng.standard_normal(shape)), 1.0)
    return mask, gamma, est, prior


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))[None, None]


@pytest.mark.parametrize("kind", TARGETS)
def test_relative_loss_equals_spec_rmse_squared(kind):
    mask, gamma, est, prior = _fields()
    tt = TargetTransform(kind)
    tt.fit([tt.raw(gamma, mask, prior)], [mask])
    y, p = tt.forward(gamma, mask, prior), tt.forward(est, mask, prior)
    loss = relative_loss(_t(p), _t(y), _t(mask), tt)
    spec = sample_metrics(est, gamma, mask)["rmse"] ** 2
    assert float(loss) == pytest.approx(spec, rel=1e-9)
    eps = tt.eps(_t(p), _t(y))[0, 0].numpy()[mask]
    np.testing.assert_allclose(eps, relative_error(est, gamma, mask), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", TARGETS)
def test_target_roundtrip(kind):
    mask, gamma, _, prior = _fields(1)
    tt = TargetTransform(kind)
    tt.fit([tt.raw(gamma, mask, prior)], [mask])
    back = tt.inverse(tt.forward(gamma, mask, prior), mask, prior)
    np.testing.assert_allclose(back[mask], gamma[mask], rtol=1e-12)
    assert np.isnan(back[~mask]).all()
    assert TargetTransform.from_dict(tt.to_dict()).to_dict() == tt.to_dict()


@pytest.mark.parametrize("loss", [masked_mse, relative_loss])
def test_land_never_contributes(loss):
    mask, gamma, est, prior = _fields(2)
    tt = TargetTransform("log_gamma")
    tt.fit([tt.raw(gamma, mask, prior)], [mask])
    y, p = _t(tt.forward(gamma, mask, prior)), _t(tt.forward(est, mask, prior))
    m = _t(mask)
    base = loss(p, y, m, tt)
    noisy = p + 100.0 * (1 - m) * torch.randn_like(p)
    assert float(loss(noisy, y, m, tt)) == pytest.approx(float(base), rel=1e-12)


def test_relative_loss_gradient_is_finite_with_land():
    mask, gamma, est, prior = _fields(3)
    tt = TargetTransform("gamma")
    tt.fit([tt.raw(gamma, mask, prior)], [mask])
    p = _t(tt.forward(est, mask, prior)).requires_grad_(True)
    relative_loss(p, _t(tt.forward(gamma, mask, prior)), _t(mask), tt).backward()
    assert torch.isfinite(p.grad).all() and float(p.grad[0, 0][torch.from_numpy(~mask)].abs().max()) == 0.0


def test_exact_on_small_components_matches_bruteforce():
    from diffnorm.grid import Grid
    from diffnorm.normalization import bruteforce_normalization
    from diffnorm.transforms.targets import analytic_prior, small_components

    rng = np.random.default_rng(4)
    mask = np.zeros((10, 12), np.int8)
    mask[1:5, 1:9] = 1  # a 32-cell basin
    mask[7, 3] = 1  # an isolated cell
    mask[7:9, 7:10] = 1  # a 6-cell lake
    mask[:, 11] = 1  # a channel, joined through the periodic x boundary to (7, 0): 11 cells
    mask[7, 0] = 1
    grid = Grid(mask, rng.uniform(1, 2, mask.shape), rng.uniform(0.5, 3, mask.shape), rng.uniform(0.5, 3, mask.shape),
                periodic_x=True)
    small = small_components(grid, 11)
    assert small.sum() == 1 + 6 + 11 and small[7, 0] and not small[1:5, 1:9].any()
    ref = bruteforce_normalization(grid, 6)
    prior = analytic_prior(grid, 6, exact_small=11)
    np.testing.assert_allclose(prior[small], ref[small], rtol=1e-10)
    np.testing.assert_allclose(prior[7, 3], np.sqrt(grid.area[7, 3]), rtol=1e-12)  # no diffusion: γ = sqrt(W)


def test_coast_weights_by_hand():
    mask = torch.ones(1, 1, 7, 9)
    mask[0, 0, 3, 0] = 0  # one land cell on the west edge
    w = coast_weights(mask, radius=2, weight=4.0)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    near = (torch.maximum((rows - 3).abs(), cols.abs()) <= 2).float()  # Chebyshev distance ≤ 2 from (3, 0)
    torch.testing.assert_close(w, 1.0 + 4.0 * near)
    assert torch.equal(coast_weights(torch.ones(1, 1, 4, 4), 2, 4.0), torch.ones(1, 1, 4, 4))  # no land, no weight


def test_weighted_mask_gives_weighted_mse():
    rng = np.random.default_rng(3)
    pred, true = _t(rng.standard_normal((6, 8))), _t(rng.standard_normal((6, 8)))
    mask = _t(rng.random((6, 8)) > 0.3)
    w = coast_weights(mask, 1, 3.0).to(pred.dtype)
    r2, m, ww = ((pred - true) ** 2).numpy(), mask.numpy(), w.numpy()
    assert float(masked_mse(pred, true, mask * w)) == pytest.approx(float((r2 * m * ww).sum() / (m * ww).sum()))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.37, 1.0])
def test_tail_mean_is_the_mean_of_the_largest_ocean_values(fraction):
    """Brute force: sort the ocean cells' values, average the top ceil(fraction * n); land (huge values there)
    is never picked."""
    rng = np.random.default_rng(3)
    values = rng.random((2, 1, 13, 17))
    mask = rng.random(values.shape) > 0.4
    values[~mask] = 1e6
    ocean = np.sort(values[mask])[::-1]
    k = int(np.ceil(fraction * ocean.size))
    got = float(tail_mean(torch.from_numpy(values), torch.from_numpy(mask), fraction))
    assert got == pytest.approx(ocean[:k].mean(), rel=1e-12)


def test_tail_weight_adds_the_worst_cells_mean_to_the_loss():
    """relative loss with a tail term = SPEC RMSE² + w × mean of the largest 5 % of ε² (hand-derived from the
    SPEC metrics); mse likewise on (ŷ − y)²; the gradient reaches the tail cells more strongly."""
    mask, gamma, est, prior = _fields(4, shape=(20, 30))
    tt = TargetTransform("log_ratio_images")
    tt.fit([tt.raw(gamma, mask, prior)], [mask])
    y, p = tt.forward(gamma, mask, prior), tt.forward(est, mask, prior)
    eps2 = np.sort(relative_error(est, gamma, mask) ** 2)[::-1]
    k = int(np.ceil(0.05 * eps2.size))
    loss = relative_loss(_t(p), _t(y), _t(mask), tt, tail_weight=0.5, tail_fraction=0.05)
    spec = sample_metrics(est, gamma, mask)["rmse"] ** 2
    assert float(loss) == pytest.approx(spec + 0.5 * eps2[:k].mean(), rel=1e-9)
    d2 = np.sort(((p - y)[mask]) ** 2)[::-1]
    mse = masked_mse(_t(p), _t(y), _t(mask), tail_weight=2.0, tail_fraction=0.05)
    assert float(mse) == pytest.approx(d2.mean() + 2.0 * d2[:k].mean(), rel=1e-9)
    pred = _t(p).requires_grad_(True)
    masked_mse(pred, _t(y), _t(mask), tail_weight=2.0, tail_fraction=0.05).backward()
    g = np.abs(pred.grad[0, 0].numpy() / np.where(mask, p - y, 1.0))[mask]  # d loss / d pred / (pred - y)
    assert np.sum(g > 1.5 * g.min()) == k  # the k tail cells get (1/n + w/k) * 2, the others 2/n


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_tail_fraction_out_of_range_is_refused(fraction):
    with pytest.raises(ValueError, match="tail_fraction"):
        tail_mean(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3), fraction)
