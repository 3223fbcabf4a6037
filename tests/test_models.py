"""diffnorm.models: the study's parameter counts, padding, shapes, scripting."""

import numpy as np
import pytest
import torch

from diffnorm.models import ACTIVATIONS, build_model, count_parameters, geo_pad


@pytest.mark.parametrize(("skip", "expected"), [("v2", 299_521), ("v1", 412_417), ("none", 299_521)])
def test_study_parameter_counts(skip, expected):
    # 4 inputs, 1 input layer, 4 blocks of 2 layers, 1 output layer, 64 filters, 3x3 with bias + batch norm
    model = build_model("cnn", in_channels=4, filters=64, blocks=4, layers_per_block=2, skip=skip)
    assert count_parameters(model) == expected


def test_v1_block_widths():
    model = build_model("cnn", in_channels=4, skip="v1")
    assert model.input_layer.conv.in_channels == 4
    assert [b.layers[0].conv.in_channels for b in model.blocks] == [68, 128, 128, 128]
    assert model.output_layer.conv.in_channels == 64


def test_unet_about_a_million_parameters():
    model = build_model("unet", in_channels=4)
    assert 0.9e6 < count_parameters(model) < 1.2e6
    assert model(torch.randn(1, 4, 45, 90)).shape == (1, 1, 45, 90)


@pytest.mark.parametrize("skip", ["none", "v1", "v2"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_output_shape(skip, padding):
    model = build_model("cnn", in_channels=3, filters=8, blocks=2, skip=skip, padding=padding,
                        dilations=[1, 2, 1, 2, 1])
    assert model(torch.randn(2, 3, 13, 17)).shape == (2, 1, 13, 17)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activations(act):
    model = build_model("cnn", in_channels=2, filters=4, blocks=1, activation=act)
    assert torch.isfinite(model(torch.randn(1, 2, 8, 8))).all()


def test_valid_padding_is_periodic_in_x():
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=2, filters=8, blocks=2, skip="v2", periodic_x=True).eval()
    x = torch.randn(1, 2, 12, 20)
    with torch.no_grad():
        y = model(x)
        y_rolled = model(torch.roll(x, 5, dims=3))
    torch.testing.assert_close(torch.roll(y, 5, dims=3), y_rolled, rtol=1e-5, atol=1e-5)


def test_body_on_prepadded_input_equals_forward():
    model = build_model("cnn", in_channels=2, filters=8, blocks=2, skip="v1", periodic_x=True).eval()
    x = torch.randn(1, 2, 12, 20)
    with torch.no_grad():
        a = model(x)
        b = model.body(geo_pad(x, model.margin, True, False, "land"))
    torch.testing.assert_close(a, b)


def test_geo_pad_modes():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    p = geo_pad(x, 1, periodic_x=True, periodic_y=False, closed="land")
    assert p.shape == (1, 1, 5, 6)
    assert torch.equal(p[0, 0, 1, 0], x[0, 0, 0, -1]) and torch.equal(p[0, 0, 1, -1], x[0, 0, 0, 0])
    assert torch.all(p[0, 0, 0] == 0)
    r = geo_pad(x, 2, closed="replicate")
    assert torch.equal(r[0, 0, 0, 2:6], x[0, 0, 0]) and torch.equal(r[0, 0, 2, 0:2], x[0, 0, 0, :1].repeat(2))


@pytest.mark.parametrize("periodic_y", [False, True])
@pytest.mark.parametrize("periodic_x", [False, True])
@pytest.mark.parametrize("closed", ["land", "replicate"])
@pytest.mark.parametrize("m", [0, 1, 3, 7])
def test_geo_pad_matches_numpy_pad(m, closed, periodic_x, periodic_y):
    """Against np.pad, axis by axis (y first): wrap on periodic axes, zeros or edge values on closed ones, and
    margins wider than the grid (m = 7 > 3 rows, 5 columns) wrap around several times."""
    x = torch.randn(2, 3, 3, 5, dtype=torch.float64)
    expected = x.numpy()
    for axis, periodic in ((2, periodic_y), (3, periodic_x)):
        widths = [(0, 0)] * 4
        widths[axis] = (m, m)
        mode = "wrap" if periodic else ("constant" if closed == "land" else "edge")
        expected = np.pad(expected, widths, mode=mode)
    padded = geo_pad(x, m, periodic_x=periodic_x, periodic_y=periodic_y, closed=closed)
    np.testing.assert_array_equal(padded.numpy(), expected)


@pytest.mark.parametrize("name", ["cnn", "unet"])
def test_torchscript(name):
    kw = {"filters": 4, "blocks": 1, "skip": "v1"} if name == "cnn" else {"filters": 4, "depth": 2}
    model = build_model(name, in_channels=2, **kw).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 2, 10, 12)
    torch.testing.assert_close(scripted(x), model(x))


def test_bf16_autocast_keeps_the_output_layer_in_float32():
    """Mixed-precision training (``trainer.precision: bf16-mixed``): the hidden layers run in bf16, the output
    layer in float32, so the prediction is not rounded to bf16's 3 digits (2e-3 in ε on a coastal cell)."""
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=3, filters=8, blocks=2, skip="v2", batchnorm=False)
    seen = {}
    model.output_layer.conv.register_forward_hook(lambda m, a, out: seen.update(inp=a[0].dtype, out=out.dtype))
    model.blocks[0].layers[0].conv.register_forward_hook(lambda m, a, out: seen.update(hidden=out.dtype))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert seen == {"hidden": torch.bfloat16, "inp": torch.float32, "out": torch.float32}
    assert y.dtype == torch.float32
    assert not torch.equal(y, ref)  # the hidden layers really ran in bf16 ...
    torch.testing.assert_close(y, ref, rtol=0, atol=0.05 * float(ref.abs().max()))  # ... and agree to bf16 rounding


def test_bf16_training_output_has_the_float32_value_and_a_bf16_gradient():
    """In training (gradients on) the output layer's value is still float32, bit for bit, while its backward pass
    runs through a bf16 copy of the layer (the cheap path); the weight gradient equals the float32 layer's to bf16
    rounding."""
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=3, filters=8, blocks=2, skip="v2", batchnorm=False)
    seen = []
    model.output_layer.conv.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    x, target = torch.randn(2, 3, 16, 16), torch.randn(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_eval = model(x)
    assert sorted(map(str, seen)) == ["torch.bfloat16", "torch.float32", "torch.float32"]
    assert y.dtype == torch.float32 and y.requires_grad
    torch.testing.assert_close(y.detach(), y_eval, rtol=0, atol=1e-6)
    ((y - target) ** 2).mean().backward()
    g = model.output_layer.conv.weight.grad.clone()
    model.zero_grad()
    model._output_float32 = lambda h: _float32_layer(model, h)  # the reference: a float32 output layer, both ways
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y32 = model(x)
    ((y32 - target) ** 2).mean().backward()
    torch.testing.assert_close(y32.detach(), y.detach(), rtol=0, atol=1e-6)  # the same value
    torch.testing.assert_close(g, model.output_layer.conv.weight.grad, rtol=0.02, atol=1e-3 * float(g.abs().max()))


def _float32_layer(model, h):
    with torch.autocast("cpu", enabled=False):
        return model.output_layer(h.float())


@pytest.mark.parametrize("skip", ["none", "v2"])
def test_widening_keeps_the_function_and_lets_new_channels_learn(skip):
    from diffnorm.models.cnn import grow_state_dict

    kw = dict(in_channels=3, blocks=2, skip=skip, batchnorm=False, activation="relu", periodic_x=True,
              dilations=[1, 2, 1, 2, 1])
    torch.manual_seed(0)
    narrow = build_model("cnn", filters=6, **kw).double()
    for p in narrow.parameters():  # trained-looking weights: no zero biases
        torch.nn.init.normal_(p, std=0.3)
    wide = build_model("cnn", filters=10, **kw).double()
    wide.load_state_dict(grow_state_dict(narrow.state_dict(), wide))
    x = torch.randn(2, 3, 17, 23, dtype=torch.float64)
    torch.testing.assert_close(wide(x), narrow(x), rtol=0, atol=1e-12)
    assert count_parameters(wide) > count_parameters(narrow)
    # the new channels compute something, and the zero weights reading them get a gradient
    wide(x).square().sum().backward()
    grad_new = wide.output_layer.conv.weight.grad[:, 6:]
    assert torch.equal(wide.output_layer.conv.weight[:, 6:], torch.zeros_like(grad_new))
    assert grad_new.abs().sum() > 0


@pytest.mark.parametrize("filters", [6, 9])
def test_deepening_keeps_the_function_and_lets_new_blocks_learn(filters):
    """New residual blocks after the trained ones start as the identity (last conv zero), also when widened."""
    from diffnorm.models.cnn import grow_state_dict

    kw = dict(in_channels=3, skip="v2", batchnorm=False, activation="relu", periodic_x=True)
    torch.manual_seed(0)
    shallow = build_model("cnn", filters=6, blocks=2, dilations=[1, 2, 1, 2, 1], **kw).double()
    for p in shallow.parameters():
        torch.nn.init.normal_(p, std=0.3)
    deep = build_model("cnn", filters=filters, blocks=4, dilations=[1, 2, 1, 2, 1, 1, 1, 4, 1], **kw).double()
    deep.load_state_dict(grow_state_dict(shallow.state_dict(), deep))
    assert deep.margin == shallow.margin + 7
    x = torch.randn(2, 3, 17, 23, dtype=torch.float64)
    torch.testing.assert_close(deep(x), shallow(x), rtol=0, atol=1e-12)
    new_last = deep.blocks[3].layers[1].conv.weight
    assert torch.equal(new_last, torch.zeros_like(new_last))
    assert deep.blocks[3].layers[0].conv.weight.abs().sum() > 0  # random: it computes features from the start
    deep(x).square().sum().backward()
    assert new_last.grad.abs().sum() > 0


def test_growing_refuses_what_it_cannot_keep():
    from diffnorm.models.cnn import grow_state_dict

    narrow = build_model("cnn", in_channels=3, filters=6, blocks=2, skip="v2", batchnorm=False)
    for bad in (dict(skip="v1", batchnorm=False), dict(skip="v2", batchnorm=True)):
        with pytest.raises(ValueError, match="growing needs"):
            grow_state_dict(narrow.state_dict(), build_model("cnn", in_channels=3, filters=10, blocks=2, **bad))
    with pytest.raises(ValueError, match="does not fit"):
        grow_state_dict(narrow.state_dict(), build_model("cnn", in_channels=3, filters=4, blocks=2, skip="v2",
                                                         batchnorm=False))
    with pytest.raises(ValueError, match="has no"):  # another block layout
        grow_state_dict(narrow.state_dict(), build_model("cnn", in_channels=3, filters=10, blocks=2, skip="v2",
                                                         layers_per_block=3, batchnorm=False))
    with pytest.raises(ValueError, match="has 2 blocks, more than 1"):
        grow_state_dict(narrow.state_dict(), build_model("cnn", in_channels=3, filters=6, blocks=1, skip="v2",
                                                         batchnorm=False))
    for bad in (dict(skip="none", activation="relu"), dict(skip="v2", activation="elu")):
        plain = build_model("cnn", in_channels=3, filters=6, blocks=2, batchnorm=False, **bad)
        with pytest.raises(ValueError, match="growing deeper needs skip 'v2' and ReLU"):
            grow_state_dict(plain.state_dict(), build_model("cnn", in_channels=3, filters=6, blocks=3,
                                                            batchnorm=False, **bad))
