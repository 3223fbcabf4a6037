"""diffnorm.models.inference.forward_ocean: same output as model(x) on the ocean, faster."""

import numpy as np
import pytest
import torch

from diffnorm.models import build_model
from diffnorm.models.inference import folded, forward_ocean, ocean_window


def _trained_like(model):
    """Non-trivial batch-norm statistics and affine parameters (a fresh BN is the identity)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return model.eval()


def _input(ny=40, nx=48, land_rows=(6, 5), land_cols=(0, 0), seed=0):
    rng = np.random.default_rng(seed)
    ocean = np.ones((ny, nx), bool)
    ocean[:land_rows[0]] = False
    ocean[ny - land_rows[1]:] = False
    ocean[:, :land_cols[0]] = False
    ocean[:, nx - land_cols[1]:] = False
    ocean &= rng.random((ny, nx)) > 0.2  # islands inside
    x = rng.standard_normal((1, 5, ny, nx)).astype(np.float32) * ocean
    return torch.from_numpy(x), ocean


@pytest.mark.parametrize(("skip", "activation", "batchnorm"),
                         [("v2", "relu", True), ("v1", "relu", True), ("none", "relu", True), ("v2", "prelu", True),
                          ("v2", "elu", True), ("v2", "relu", False)])
@pytest.mark.parametrize("periodic", [(True, False), (False, False), (False, True)])
def test_forward_ocean_matches_model_on_ocean(skip, activation, batchnorm, periodic):
    torch.manual_seed(0)
    model = _trained_like(build_model("cnn", in_channels=5, filters=8, blocks=2, layers_per_block=2, skip=skip,
                                      activation=activation, batchnorm=batchnorm, padding="valid",
                                      dilations=[1, 2, 1, 2, 1], periodic_x=periodic[0], periodic_y=periodic[1]))
    if activation == "prelu":  # learned slopes away from their initial 0.25 (one per layer)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.PReLU):
                    mod.weight.uniform_(-0.5, 0.5)
    x, ocean = _input(land_cols=(3, 4))
    with torch.inference_mode():
        ref = model(x)
        out = forward_ocean(model, x, ocean)
        full = forward_ocean(model, x)
    assert out.shape == ref.shape and full.shape == ref.shape
    np.testing.assert_allclose(out[0, 0].numpy()[ocean], ref[0, 0].numpy()[ocean], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    rows = ocean_window(ocean, 0)
    if not periodic[1]:  # land rows beyond the ocean's bounding box are not computed (0)
        assert rows[0] > 0 and np.all(out[0, 0, :rows[0]].numpy() == 0)


def test_folded_copy_follows_weight_changes_and_training_mode_is_untouched():
    torch.manual_seed(0)
    model = _trained_like(build_model("cnn", in_channels=5, filters=8, blocks=1, layers_per_block=2, skip="v2",
                                      padding="valid", periodic_x=True))
    x, ocean = _input()
    first = folded(model)
    assert folded(model) is first  # cached
    with torch.no_grad():
        model.output_layer.conv.bias.add_(1.0)
    assert folded(model) is not first  # rebuilt after an in-place update
    with torch.inference_mode():
        np.testing.assert_allclose(forward_ocean(model, x, ocean)[0, 0].numpy()[ocean],
                                   model(x)[0, 0].numpy()[ocean], rtol=1e-5, atol=1e-5)
    model.train()
    y = forward_ocean(model, x, ocean)  # training mode: the model itself (batch statistics, gradients)
    assert y.requires_grad


def test_same_padding_and_unet_run_unchanged():
    torch.manual_seed(0)
    x, ocean = _input(ny=32, nx=32)
    for model in (build_model("cnn", in_channels=5, filters=4, blocks=1, padding="same").eval(),
                  build_model("unet", in_channels=5).eval()):
        with torch.inference_mode():
            assert torch.equal(forward_ocean(model, x, ocean), model(x))


def test_forward_ocean_bf16_is_float32_out_and_close():
    """bf16 autocast on the folded fast path: a float32 output (the output layer stays float32) within bf16 rounding
    of the float32 forward pass."""
    torch.manual_seed(0)
    model = _trained_like(build_model("cnn", in_channels=5, filters=8, blocks=2, skip="v2", padding="valid",
                                      dilations=[1, 2, 1, 2, 1], periodic_x=True))
    x, ocean = _input()
    with torch.inference_mode():
        ref = forward_ocean(model, x, ocean)
        out = forward_ocean(model, x, ocean, precision="bf16")
    assert out.dtype == torch.float32 and not torch.equal(out, ref)
    scale = float(ref[0, 0].abs().max())
    np.testing.assert_allclose(out[0, 0].numpy()[ocean], ref[0, 0].numpy()[ocean], rtol=0, atol=0.05 * scale)
    with pytest.raises(ValueError, match="unknown precision"):
        forward_ocean(model, x, ocean, precision="16")


def test_batch_runs_grid_by_grid_each_in_its_own_ocean_window():
    """A CPU batch (TTA flips, several fields) is run one grid at a time: each sample equals model(x) on its own
    ocean and is zero on the land rows beyond its own ocean window, even where another sample has ocean."""
    torch.manual_seed(0)
    model = _trained_like(build_model("cnn", in_channels=5, filters=8, blocks=2, skip="v2", batchnorm=True,
                                      padding="valid", dilations=[1, 2, 1, 2, 1], periodic_x=True))
    samples = [_input(land_rows=rows, seed=k) for k, rows in enumerate([(6, 5), (12, 2), (3, 14)])]
    x = torch.cat([s[0] for s in samples])
    oceans = np.stack([s[1] for s in samples])
    with torch.inference_mode():
        ref = model(x)
        out = forward_ocean(model, x, oceans)
        shared = forward_ocean(model, x, oceans[0])  # one (ny, nx) mask for the whole batch
    assert out.shape == ref.shape
    for k, ocean in enumerate(oceans):
        np.testing.assert_allclose(out[k, 0].numpy()[ocean], ref[k, 0].numpy()[ocean], rtol=1e-5, atol=1e-5)
        first, last = ocean_window(ocean, 0)
        assert np.all(out[k, 0, :first].numpy() == 0) and np.all(out[k, 0, last:].numpy() == 0)
        np.testing.assert_allclose(shared[k, 0].numpy()[oceans[0]], ref[k, 0].numpy()[oceans[0]], rtol=1e-5,
                                   atol=1e-5)
    with pytest.raises(ValueError, match="ocean mask of shape"):
        forward_ocean(model, x, oceans[:2])
