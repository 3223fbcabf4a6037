"""Export a trained network for assimilation systems in Fortran/C++: ONNX or TorchScript.

The exported graph is the network: input ``x`` of shape ``(batch, channels, ny, nx)``
(standardized channels, float32), output ``y`` of shape ``(batch, 1, ny, nx)`` (the standardized
target). Batch and spatial sizes are dynamic. The pre- and post-processing (which channels, their
standardization, how the target turns into γ) is written next to the model as JSON
(``FILE.json``: the model's meta data) so that a caller can reproduce :mod:`diffnorm.prediction`.

With test-time augmentation (``tta="flips"``, the default of a model that predicts with it, such as
``sphere-1deg``) the graph also flips its input the C-grid way (:class:`FlipAverage`), runs the network on each
flip and averages the flipped-back outputs, so a caller gets the accuracy of ``diffnorm predict`` from the same
one input. ``FILE.json`` says so (``export.tta``) and its ``tta`` is null: nothing is left to average outside.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .transforms.augmentation import TRANSFORMS
from .transforms.inputs import FACE_AXIS, ODD_FACE_CHANNELS

FORMATS = ("onnx", "torchscript")


def _example_input(meta: dict, n_channels: int | None, shape: tuple[int, int] = (16, 24)):
    c = n_channels or len(meta.get("channels") or []) or 1
    mult = int(meta.get("shape_multiple") or 1)
    ny = -(-shape[0] // mult) * mult
    nx = -(-shape[1] // mult) * mult
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, c, ny, nx, generator=gen)


class FlipAverage(torch.nn.Module):
    """Test-time augmentation in the graph: the mean over ``transforms`` (flips of
    :data:`diffnorm.transforms.augmentation.FLIPS`) of ``flip⁻¹(net(flip(x)))`` on standardized inputs.

    Each flip is :func:`~diffnorm.transforms.inputs.augment_channels` followed by standardization, done on the
    standardized channels: cell channels mirror; face channels mirror and move by one cell along the flipped
    axis; the area ratios ln(area′/area) also change sign there, which on standardized values
    ``z = (r − μ)/σ`` of the active faces is ``−z − 2μ/σ`` — the active faces come from the ``mask`` channel
    and the grid's periodicity, so nothing else enters the graph."""

    def __init__(self, net, meta: dict, transforms) -> None:
        super().__init__()
        it = meta.get("input_transform") or {}
        channels = list(meta.get("channels") or [])
        if it.get("mean") is None or list(it.get("channels") or []) != channels:
            raise ValueError("test-time augmentation in the exported graph needs a model of the training code "
                             "(its meta data's fitted input_transform); export it with --tta none")
        self.net = net
        self.flips = [(("flip_x" in TRANSFORMS[t]), ("flip_y" in TRANSFORMS[t])) for t in transforms]
        self.face_dim = [{"x": -1, "y": -2}.get(FACE_AXIS.get(c, ""), 0) for c in channels]
        odd = [k for k, c in enumerate(channels) if c in ODD_FACE_CHANNELS]
        mean, std = it["mean"], it["std"]
        self.odd_shift = {k: 2.0 * float(mean[k]) / float(std[k]) for k in odd}
        self.mask_index = channels.index("mask") if "mask" in channels else -1
        # the mask channel's (mean, std): (0, 1), it is not standardized, but read them rather than assume it
        self.mask_scale = (float(mean[self.mask_index]), float(std[self.mask_index])) if self.mask_index >= 0 \
            else (0.0, 1.0)
        if any(self.odd_shift.values()) and self.mask_index < 0:
            raise ValueError(f"channels {[channels[k] for k in odd]} change sign under a flip; in the exported "
                             "graph that needs the 'mask' channel (to know the active faces); export with "
                             "--tta none")
        periodic = {"x": meta.get("periodic_x", getattr(net, "periodic_x", None)),
                    "y": meta.get("periodic_y", getattr(net, "periodic_y", None))}
        if odd and any(periodic[FACE_AXIS[channels[k]]] is None for k in odd):
            raise ValueError("the model's meta data does not say whether the grid is periodic (periodic_x, "
                             "periodic_y), which the flips of its area-ratio channels need; export with --tta none")
        self.periodic = {-1: bool(periodic["x"]), -2: bool(periodic["y"])}

    def _active(self, x, dim: int):
        """Active faces along ``dim`` (1 where both cells are ocean; none past a closed boundary)."""
        m = (x[:, self.mask_index] * self.mask_scale[1] + self.mask_scale[0] > 0.5).to(x.dtype)  # raw 0/1
        active = m * torch.roll(m, -1, dim)
        if not self.periodic[dim]:
            last = torch.ones_like(active)
            if dim == -1:
                last[..., -1] = 0
            else:
                last[..., -1, :] = 0
            active = active * last
        return active

    @staticmethod
    def _mirror(a, dims: list[int], face_dim: int):
        out = torch.flip(a, dims)
        if face_dim in dims:
            out = torch.roll(out, -1, face_dim)
        return out

    def _flip_inputs(self, x, dims: list[int]):
        chans = []
        for k, fd in enumerate(self.face_dim):
            a = self._mirror(x[:, k], dims, fd)
            if k in self.odd_shift and fd in dims:
                a = -a
                if self.odd_shift[k]:
                    a = a - self.odd_shift[k] * self._mirror(self._active(x, fd), dims, fd)
            chans.append(a)
        return torch.stack(chans, 1)

    def forward(self, x):
        total = None
        for fx, fy in self.flips:
            dims = ([-1] if fx else []) + ([-2] if fy else [])
            y = self.net(self._flip_inputs(x, dims) if dims else x)
            y = torch.flip(y, dims) if dims else y
            total = y if total is None else total + y
        return total / len(self.flips)


def _plain_meta(meta: dict) -> dict:
    def conv(v):
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.integer, np.floating)):
            return v.item()
        if hasattr(v, "to_dict"):
            return conv(v.to_dict())
        return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)

    return conv(meta)


def export_model(model, meta: dict, path: str | os.PathLike, fmt: str = "onnx", opset: int = 17,
                 verify: bool = True, atol: float = 1e-5, tta: str | list[str] | None = None) -> dict:
    """Write ``path`` (and ``path`` + ``.json`` with the meta data). Returns a report dict with the
    max abs difference between the exported model and PyTorch on a random input (``verify``).

    ``tta``: test-time augmentation baked into the graph (:class:`FlipAverage`) — ``None``/``"none"`` (the
    network alone), ``"flips"``, a list of flips, or ``"model"`` (the model's own setting, its meta data's
    ``tta``: what ``diffnorm predict`` does by default)."""
    from .prediction import _first_conv_in_channels
    from .transforms.augmentation import tta_transforms

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu").float()
    x = _example_input(meta, _first_conv_in_channels(model))
    flips = tta_transforms(tta, meta.get("tta"))
    net = model
    if flips != ("identity",):
        model = FlipAverage(net, meta, flips).eval()
    meta = dict(meta)
    meta["export"] = {"format": fmt, "input": "x (batch, channels, ny, nx) float32, standardized channels",
                      "output": "y (batch, 1, ny, nx), standardized target"
                                + (f" averaged over the flips {list(flips)} in the graph" if len(flips) > 1 else ""),
                      "tta": list(flips)}
    meta["tta"] = None  # any test-time augmentation is in the graph now: a caller runs it once
    for axis in ("periodic_x", "periodic_y"):  # the padding baked into the exported graph
        if hasattr(net, axis):
            meta["export"][axis] = bool(getattr(net, axis))
    if fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch", 2: "ny", 3: "nx"}, "y": {0: "batch", 2: "ny", 3: "nx"}},
                              opset_version=opset, do_constant_folding=True)
    else:
        try:
            scripted = torch.jit.script(model)
        except Exception:  # noqa: BLE001 - fall back to tracing for models TorchScript cannot compile
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.trace(model, (x,))
        torch.jit.save(scripted, str(path), _extra_files={"meta.json": json.dumps(_plain_meta(meta))})
    Path(str(path) + ".json").write_text(json.dumps(_plain_meta(meta), indent=2))
    report = {"path": str(path), "format": fmt, "input_shape": list(x.shape), "tta": list(flips)}
    if verify:
        diff = verify_export(model, path, fmt, meta)
        report["max_abs_diff"] = diff
        if not diff <= atol:
            raise RuntimeError(f"exported {fmt} model differs from PyTorch by {diff:.3e} > {atol:g}")
    return report


def run_exported(path: str | os.PathLike, fmt: str, x: np.ndarray) -> np.ndarray:
    """Run an exported model on a float32 ``(B, C, ny, nx)`` array."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]
    m = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.inference_mode():
        out = m(torch.from_numpy(x))
    return (out[0] if isinstance(out, (tuple, list)) else out).numpy()


def verify_export(model, path: str | os.PathLike, fmt: str, meta: dict, shape: tuple[int, int] = (20, 36)) -> float:
    """Max difference between the exported model and PyTorch, ``max|y_exported − y| / max(1, max|y|)``, on an
    input of another shape and batch size than the export example (checks the dynamic axes too)."""
    from .prediction import _first_conv_in_channels

    x = _example_input(meta, _first_conv_in_channels(model), shape).repeat(2, 1, 1, 1)
    x[1] *= 0.5
    with torch.inference_mode():
        ref = model(x)
    ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
    out = run_exported(path, fmt, x.numpy())
    if out.shape != ref.shape:
        raise RuntimeError(f"exported model returns shape {out.shape}, PyTorch {ref.shape}")
    # absolute for outputs of order 1 (standardized targets), relative to the output's size beyond
    return float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max())))
