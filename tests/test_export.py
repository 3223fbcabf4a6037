"""``diffnorm export``: the ONNX file run by onnxruntime and the TorchScript file match PyTorch to 1e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffnorm.cli import main
from diffnorm.export import export_model, run_exported
from diffnorm.prediction import Predictor, load_model, save_bundle

CHANNELS = ["mask", "area", "diff_x", "diff_y"]


class Net(torch.nn.Module):
    """Conv + batch norm + PReLU + a residual block + circular padding: the layers the trained models use."""

    def __init__(self, c: int = 4, f: int = 8):
        super().__init__()
        self.inp = torch.nn.Conv2d(c, f, 3, padding=1, padding_mode="circular")
        self.bn = torch.nn.BatchNorm2d(f)
        self.act = torch.nn.PReLU()
        self.block = torch.nn.Sequential(torch.nn.Conv2d(f, f, 3, padding=1), torch.nn.BatchNorm2d(f), torch.nn.ELU(),
                                         torch.nn.Conv2d(f, f, 3, padding=1))
        self.out = torch.nn.Conv2d(f, 1, 3, padding=1, padding_mode="replicate")

    def forward(self, x):
        h = self.act(self.bn(self.inp(x)))
        h = h + self.block(h)
        return self.out(torch.nn.functional.softplus(h))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    meta = {"channels": CHANNELS, "steps": 10, "standardizer": None, "target": "log_gamma"}
    path = tmp_path_factory.mktemp("exp") / "net.pt"
    save_bundle(model, meta, path)
    return model, meta, path


def _reference(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(bundle, tmp_path, fmt, capsys):
    model, meta, path = bundle
    out = tmp_path / f"net.{fmt}"
    assert main(["export", str(path), "--format", fmt, "-o", str(out)]) == 0
    assert "max |exported" in capsys.readouterr().out
    assert json.loads((tmp_path / f"net.{fmt}.json").read_text())["channels"] == CHANNELS
    rng = np.random.default_rng(1)
    for shape in [(1, 4, 12, 20), (3, 4, 30, 17)]:  # dynamic batch and spatial sizes
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(run_exported(out, fmt, x), _reference(model, x), atol=1e-5, rtol=0)
    if fmt == "onnx":
        import onnx

        onnx.checker.check_model(onnx.load(str(out)))
    else:  # the TorchScript file carries its meta data and works with predict
        p = Predictor(*load_model(out))
        assert p.channels == CHANNELS


def test_export_api_report_and_bad_format(bundle, tmp_path):
    model, meta, _ = bundle
    report = export_model(model, meta, tmp_path / "m.onnx", "onnx")
    assert report["max_abs_diff"] <= 1e-5
    with pytest.raises(ValueError, match="unknown format"):
        export_model(model, meta, tmp_path / "m.x", "tflite")


def test_export_a_training_checkpoint(tmp_path):
    """A slim model file of the training code (``{"state_dict", "meta"}``): loaded by diffnorm.pretrained."""
    models = pytest.importorskip("diffnorm.models")
    pytest.importorskip("diffnorm.pretrained")
    kwargs = {"in_channels": 3, "filters": 8, "blocks": 2, "skip": "v2", "padding": "valid", "periodic_x": True}
    torch.manual_seed(0)
    model = models.build_model("cnn", **kwargs).eval()
    meta = {"format": "diffnorm-model/1", "model": "cnn", "model_kwargs": kwargs, "channels": ["mask", "area", "x"],
            "steps": 10, "periodic_x": True, "periodic_y": False}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp_path / "slim.pt")
    assert main(["export", str(tmp_path / "slim.pt"), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 18, 40)).astype(np.float32)
    np.testing.assert_allclose(run_exported(tmp_path / "m.onnx", "onnx", x), _reference(model, x), atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "m.onnx.json").read_text())["export"]["periodic_x"] is True


TTA_CHANNELS = ["mask", "distance", "sf_diff_x", "sf_diff_y", "area_ratio_x", "area_ratio_y"]


def _tta_case(periodic_x: bool, periodic_y: bool):
    """A small trained-format network, its meta data and one grid's raw channels (area ratios with a mean far
    from 0, so that their sign change under a flip is visible after standardization)."""
    from conftest import make_grid

    from diffnorm.models import build_model
    from diffnorm.transforms.inputs import InputTransform

    grid = make_grid(14, 18, periodic_x, periodic_y, seed=3)
    rng = np.random.default_rng(0)
    c = len(TTA_CHANNELS)
    it = InputTransform(TTA_CHANNELS, rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2.0, c))
    torch.manual_seed(0)
    net = build_model("cnn", in_channels=c, filters=8, blocks=1, skip="v2", padding="valid", dilations=[1, 2, 1],
                      periodic_x=periodic_x, periodic_y=periodic_y).eval()
    meta = {"channels": TTA_CHANNELS, "input_transform": it.to_dict(), "periodic_x": periodic_x,
            "periodic_y": periodic_y, "steps": 4, "tta": "flips"}
    return net, meta, it, it.raw(grid, 4)


@pytest.mark.parametrize("periodic_x,periodic_y", [(False, False), (True, False), (False, True), (True, True)])
def test_tta_in_the_graph_equals_the_predictors(periodic_x, periodic_y):
    """FlipAverage on the standardized input = the mean of the network over the flipped grids' own standardized
    channels, flipped back (what diffnorm predict does, itself tested against recomputed flipped grids)."""
    from diffnorm.export import FlipAverage
    from diffnorm.transforms.augmentation import FLIPS, tta_mean

    net, meta, it, (raw, valid) = _tta_case(periodic_x, periodic_y)
    with torch.no_grad():
        ref = tta_mean(net(torch.from_numpy(it.flipped(raw, valid, FLIPS)))[:, 0].numpy(), FLIPS)
        got = FlipAverage(net, meta, FLIPS)(torch.from_numpy(it.apply(raw, valid))[None])[0, 0].numpy()
        plain = net(torch.from_numpy(it.apply(raw, valid))[None])[0, 0].numpy()
    assert np.abs(plain - ref).max() > 1e-3  # the flips change the answer: the comparison means something
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_tta_runs_the_flips_in_the_graph(tmp_path, fmt, capsys):
    from diffnorm.transforms.augmentation import FLIPS, tta_mean

    net, meta, it, (raw, valid) = _tta_case(True, False)
    path = tmp_path / "net.pt"
    torch.save({"state_dict": net.state_dict(), "meta": {**meta, "format": "diffnorm-model/1", "model": "cnn",
                "model_kwargs": {"in_channels": 6, "filters": 8, "blocks": 1, "skip": "v2", "padding": "valid",
                                 "dilations": [1, 2, 1], "periodic_x": True, "periodic_y": False}}}, path)
    out = tmp_path / f"net.{fmt}"
    assert main(["export", str(path), "--format", fmt, "-o", str(out)]) == 0  # default: the model's tta (flips)
    assert "averaged in the graph" in capsys.readouterr().out
    saved = json.loads((tmp_path / f"net.{fmt}.json").read_text())
    assert saved["export"]["tta"] == list(FLIPS) and saved["tta"] is None  # nothing left to average outside
    x = it.flipped(raw, valid, FLIPS)
    with torch.no_grad():
        ref = tta_mean(net(torch.from_numpy(x))[:, 0].numpy(), FLIPS)
    got = run_exported(out, fmt, np.stack([x[0], x[0]]))  # a batch of two: the batch size is dynamic
    np.testing.assert_allclose(got[:, 0], np.stack([ref, ref]), atol=1e-5, rtol=0)
    none = tmp_path / f"plain.{fmt}"
    assert main(["export", str(path), "--format", fmt, "--tta", "none", "-o", str(none)]) == 0
    with torch.no_grad():
        np.testing.assert_allclose(run_exported(none, fmt, x[:1]), net(torch.from_numpy(x[:1])).numpy(), atol=1e-5)
    assert json.loads((tmp_path / f"plain.{fmt}.json").read_text())["export"]["tta"] == ["identity"]


def test_tta_in_the_graph_refuses_what_it_cannot_flip(bundle, tmp_path):
    from diffnorm.export import FlipAverage
    from diffnorm.transforms.augmentation import FLIPS

    model, meta, _ = bundle  # a features-path model without the training code's input transform
    with pytest.raises(ValueError, match="input_transform"):
        export_model(model, meta, tmp_path / "m.onnx", "onnx", tta="flips")
    net, meta, _, _ = _tta_case(False, False)
    no_mask = {**meta, "channels": TTA_CHANNELS[1:], "input_transform": {
        "channels": TTA_CHANNELS[1:], "mean": meta["input_transform"]["mean"][1:],
        "std": meta["input_transform"]["std"][1:]}}
    with pytest.raises(ValueError, match="'mask' channel"):
        FlipAverage(net, no_mask, FLIPS)


def test_cli_tta_choices_are_the_library_s():
    from diffnorm.cli.evaluate import TTA_CHOICES as cli_choices
    from diffnorm.transforms.augmentation import TTA_CHOICES

    assert tuple(cli_choices) == tuple(TTA_CHOICES)


def test_cli_precision_choices_are_the_library_s():
    from diffnorm.cli.evaluate import PRECISION_CHOICES
    from diffnorm.models.inference import PRECISIONS

    assert tuple(PRECISION_CHOICES) == tuple(PRECISIONS)
