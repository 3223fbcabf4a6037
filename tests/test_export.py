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
