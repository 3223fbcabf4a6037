"""Export a trained network for assimilation systems in Fortran/C++: ONNX or TorchScript.

The exported graph is the network alone: input ``x`` of shape ``(batch, channels, ny, nx)``
(standardized channels, float32), output ``y`` of shape ``(batch, 1, ny, nx)`` (the standardized
target). Batch and spatial sizes are dynamic. The pre- and post-processing (which channels, their
standardization, how the target turns into γ) is written next to the model as JSON
(``FILE.json``: the model's meta data) so that a caller can reproduce :mod:`diffnorm.prediction`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

FORMATS = ("onnx", "torchscript")


def _example_input(meta: dict, n_channels: int | None, shape: tuple[int, int] = (16, 24)):
    import torch

    c = n_channels or len(meta.get("channels") or []) or 1
    mult = int(meta.get("shape_multiple") or 1)
    ny = -(-shape[0] // mult) * mult
    nx = -(-shape[1] // mult) * mult
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, c, ny, nx, generator=gen)


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
                 verify: bool = True, atol: float = 1e-5) -> dict:
    """Write ``path`` (and ``path`` + ``.json`` with the meta data). Returns a report dict with the
    max abs difference between the exported model and PyTorch on a random input (``verify``)."""
    import torch

    from .prediction import _first_conv_in_channels

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu").float()
    x = _example_input(meta, _first_conv_in_channels(model))
    meta = dict(meta)
    meta["export"] = {"format": fmt, "input": "x (batch, channels, ny, nx) float32, standardized channels",
                      "output": "y (batch, 1, ny, nx), standardized target"}
    for axis in ("periodic_x", "periodic_y"):  # the padding baked into the exported graph
        if hasattr(model, axis):
            meta["export"][axis] = bool(getattr(model, axis))
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
    report = {"path": str(path), "format": fmt, "input_shape": list(x.shape)}
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
    import torch

    m = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.inference_mode():
        out = m(torch.from_numpy(x))
    return (out[0] if isinstance(out, (tuple, list)) else out).numpy()


def verify_export(model, path: str | os.PathLike, fmt: str, meta: dict, shape: tuple[int, int] = (20, 36)) -> float:
    """Max difference between the exported model and PyTorch, ``max|y_exported − y| / max(1, max|y|)``, on an
    input of another shape and batch size than the export example (checks the dynamic axes too)."""
    import torch

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
