"""Trained models: load a checkpoint or a shipped model by name, predict γ, export a slim model file.

Contract of :func:`load_model` (``torch.load(..., weights_only=True)`` only — no pickled code runs):

``load_model(ref) -> (model, meta)`` where ``ref`` is a shipped model name (``"sphere-1deg"``: the file
``diffnorm/pretrained/sphere-1deg.pt``), a Lightning checkpoint written by ``diffnorm train`` (``.ckpt``) or a
slim model file written by :func:`export_checkpoint`. ``model`` is a ``torch.nn.Module`` in eval mode on the
CPU taking standardized inputs ``(B, C, ny, nx)`` float32 and returning the standardized target
``(B, 1, ny, nx)``; it pads its input itself (circular along periodic axes). ``meta`` is a JSON-able dict:

- ``format`` (``"diffnorm-model/1"``), ``model`` and ``model_kwargs`` (rebuild with
  :func:`diffnorm.models.build_model`), ``margin`` (receptive field, cells);
- ``channels`` and ``input_transform`` (:class:`diffnorm.transforms.inputs.InputTransform` state);
- ``target`` (:data:`diffnorm.transforms.targets.TARGETS`), ``target_mean``, ``target_std`` and
  ``target_transform`` (its full state, including ``exact_small``: γ on ocean components of at most that many
  cells is computed exactly and not by the network);
- ``steps`` (M of the labels), ``periodic_x``, ``periodic_y``, ``shape`` (training field shape);
- ``standardizer: None`` and ``use_training_predict: True`` (tells :mod:`diffnorm.prediction` to call
  :func:`predict_gamma`, because the channels are those of :mod:`diffnorm.transforms.inputs`);
- optional ``valid_range`` / ``training`` (free text / numbers describing the training data and results).

:func:`predict_gamma` does the whole path grid → channels → network → γ (NaN on land).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in HERE.glob("*.pt"))


def _resolve(ref) -> Path:
    p = Path(ref)
    if p.exists():
        return p
    shipped = HERE / f"{ref}.pt"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(f"no such model: {ref} (not a file; shipped models: {', '.join(available()) or 'none'})")


def model_from_meta(meta: dict, state_dict: dict | None = None):
    from ..models import build_model

    kw = dict(meta["model_kwargs"])
    model = build_model(meta["model"], **kw)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model.periodic_x = bool(meta.get("periodic_x", kw.get("periodic_x", False)))
    model.periodic_y = bool(meta.get("periodic_y", kw.get("periodic_y", False)))
    return model.eval()


def load_model(ref: str | os.PathLike):
    """``(model in eval mode, meta)``; see the module docstring for the contract."""
    import torch

    path = _resolve(ref)
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for foreign files
        raise ValueError(f"cannot read model {path} with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(ck, dict):
        raise ValueError(f"{path} is not a diffnorm model file")
    if "diffnorm_meta" in ck:  # Lightning checkpoint
        meta = dict(ck["diffnorm_meta"])
        state = {k[len("model."):]: v for k, v in ck["state_dict"].items() if k.startswith("model.")}
    elif "meta" in ck and "state_dict" in ck:
        meta, state = dict(ck["meta"]), ck["state_dict"]
    else:
        raise ValueError(f"{path} carries no diffnorm meta data (not written by diffnorm train/export)")
    if not meta:
        raise ValueError(f"{path}: empty meta data (a checkpoint saved before training set up its data?)")
    return model_from_meta(meta, state), meta


def _target_transform(meta: dict):
    """The meta data's target transform (its full state, or the older flat target, target_mean, target_std)."""
    from ..transforms.targets import TargetTransform

    return TargetTransform.from_dict(meta.get("target_transform") or {
        "kind": meta["target"], "mean": meta.get("target_mean", 0.0), "std": meta.get("target_std", 1.0)})


def predict_gamma(model, meta: dict, grid, steps: int | None = None, force: bool = False,
                  tta: str | list[str] | None = "model", precision: str = "32",
                  exact_small: int | None = None) -> np.ndarray:
    """γ ``(ny, nx)`` (NaN on land) of a :class:`~diffnorm.grid.Grid` with a model from :func:`load_model`.

    ``tta``: test-time augmentation — ``"model"`` (default: the model's ``meta["tta"]``, none if absent),
    ``"none"``, ``"flips"`` or a list of flips (:func:`diffnorm.transforms.augmentation.tta_transforms`): the
    network runs on each flipped grid and its outputs (the standardized log-ratio target) are averaged after
    flipping back. The prior, exact small components and input channels are computed once and flipped (they are
    equivariant: :func:`diffnorm.transforms.inputs.augment_channels`).

    Raises :class:`diffnorm.prediction.ModelMismatchError` when more than 1 % of the ocean cells have a
    standardized input beyond ±12 (inputs far outside the training data, e.g. wrong units), unless ``force``.
    ``precision="bf16"`` runs the network's hidden layers in bfloat16 (:func:`diffnorm.models.inference.forward_ocean`).
    ``exact_small`` overrides the model's own (γ exact on ocean components of at most that many cells; 0: off).
    """
    import torch

    from ..transforms.augmentation import augment_cell_field, tta_mean, tta_transforms
    from ..transforms.inputs import InputTransform
    from ..transforms.targets import exact_small_override

    m = int(steps if steps is not None else meta["steps"])
    it = InputTransform.from_dict(meta["input_transform"])
    tt = _target_transform(meta)
    if exact_small is not None:
        tt.exact_small = exact_small_override(exact_small, meta, tt.exact_small)
    transforms = tta_transforms(tta, meta.get("tta"))
    prior = None
    if tt.needs_prior or tt.exact_small > 0 or any(c.startswith("analytic") for c in it.channels):
        prior = tt.prior(grid, m)
    raw, valid = it.raw(grid, m, prior)
    x = it.flipped(raw, valid, transforms)  # the network's input for each flipped grid
    z = x[list(transforms).index("identity")] if "identity" in transforms else it.apply(raw, valid)
    if not force:
        from ..prediction import check_input_range

        check_input_range(z, grid.mask, it.channels, meta.get("name", "the model"), "grid", meta.get("valid_range"),
                          remedy="pass force=True to predict anyway")
    masks = [augment_cell_field(grid.mask, t) for t in transforms]
    x = torch.from_numpy(x)
    try:
        dev = next(model.parameters()).device
    except (StopIteration, AttributeError):
        dev = torch.device("cpu")
    from ..models.inference import forward_ocean, warn_if_bf16_emulated

    warn_if_bf16_emulated(precision, dev)
    with torch.inference_mode():
        y = forward_ocean(model, x.to(dev), np.stack(masks), precision)  # exact on the ocean, land rows skipped
    y = y[:, 0].double().cpu().numpy()
    y = tta_mean(y, transforms)
    gamma = tt.inverse(y, grid.mask, prior)
    if tt.exact_small > 0:  # small components: the exact γ (prior), not the network
        fixed = tt.fixed(grid)
        gamma = np.where(fixed, prior, gamma)
    return gamma


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, extra_meta: dict | None = None,
                      exact_small: int | None = None) -> Path:
    """Write a slim model file (``{"state_dict", "meta"}``, float32 weights) and ``<out>.json`` (the meta).

    ``extra_meta`` keys replace the checkpoint's whole; ``exact_small`` sets only the target transform's
    threshold (prediction may compute exact γ on larger components than training left out of the loss).
    """
    from ..transforms.targets import check_exact_small

    model, meta = load_model(checkpoint)
    meta = {**meta, **(extra_meta or {})}
    if exact_small is not None:
        tt = _target_transform(meta)
        n = check_exact_small(exact_small)
        if n != tt.exact_small:  # keep what training used: predicting below it warns (exact_small_override)
            training = dict(meta.get("training") or {})
            training.setdefault("exact_small", tt.exact_small)
            meta["training"] = training
        meta["target_transform"] = {**tt.to_dict(), "exact_small": n}
    return save_model(model, meta, out)


def save_model(model, meta: dict, out: str | os.PathLike) -> Path:
    """Write ``model`` as a slim model file (``{"state_dict", "meta"}``, what :func:`load_model` reads with
    ``weights_only=True``) and ``<out>.json`` (the meta), each atomically (:func:`diffnorm.grid.write_atomic`)."""
    import torch

    from ..grid import write_atomic

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = write_atomic(out, lambda tmp: torch.save({"state_dict": state, "meta": meta}, str(tmp)))
    text = json.dumps(meta, indent=2) + "\n"
    write_atomic(out.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    return out


def _in_reference_units(state: dict, meta: dict, ref_meta: dict) -> dict:
    """``state`` (a model trained with ``meta``'s standardizations) rewritten so that it computes the same γ from
    inputs and to targets standardized as ``ref_meta``'s — what lets weights of different stages be averaged.

    Input channel c enters as ``z_k = valid·(x − m_k)/s_k = a·z_ref + b·valid`` with ``a = s_ref/s_k`` and
    ``b = (m_ref − m_k)/s_k``: ``a`` scales the first convolution's weights of that channel (exact: land stays 0);
    ``b`` is moved onto the ``mask`` channel's weights (exact where the channel is valid on every ocean cell, an
    approximation at the closed faces of face channels). The output ``t = y·σ_k + μ_k`` is re-expressed in the
    reference's ``(μ, σ)`` by scaling the output layer and shifting its bias (exact).
    """
    import torch

    it, it_ref = meta["input_transform"], ref_meta["input_transform"]
    if list(it["channels"]) != list(it_ref["channels"]):
        raise ValueError(f"cannot average models with different input channels: {it['channels']} and "
                         f"{it_ref['channels']}")
    tt, tt_ref = _target_transform(meta), _target_transform(ref_meta)
    if tt.kind != tt_ref.kind:
        raise ValueError(f"cannot average models with different targets: {tt.kind} and {tt_ref.kind}")
    out = {k: v.detach().clone().double() for k, v in state.items()}
    m, s = np.asarray(it["mean"], float), np.asarray(it["std"], float)
    m_ref, s_ref = np.asarray(it_ref["mean"], float), np.asarray(it_ref["std"], float)
    w = out["input_layer.conv.weight"]
    shift = torch.zeros_like(w[:, 0])
    for c in range(w.shape[1]):
        b = (m_ref[c] - m[c]) / s[c]
        shift += b * w[:, c]
        w[:, c] *= s_ref[c] / s[c]
    if "mask" in it["channels"]:
        w[:, list(it["channels"]).index("mask")] += shift
    scale = tt.std / tt_ref.std
    out["output_layer.conv.weight"] *= scale
    out["output_layer.conv.bias"] = out["output_layer.conv.bias"] * scale + (tt.mean - tt_ref.mean) / tt_ref.std
    return out


def average_models(refs, reference: int = -1) -> tuple:
    """``(model, meta)`` whose weights are the mean of the models ``refs`` (same architecture), each first
    rewritten into the standardizations of ``refs[reference]`` (:func:`_in_reference_units`); ``meta`` is that
    model's. Why: the stages of a warm-restart schedule end in one basin, and their average (stochastic weight
    averaging over the cycles' ends, or a "model soup") can generalize better than any one of them.
    """
    if len(refs) < 1:
        raise ValueError("average_models needs at least one model")
    if not -len(refs) <= reference < len(refs):
        raise ValueError(f"reference {reference} is not an index of the {len(refs)} models")
    loaded = [load_model(r) for r in refs]
    ref_meta = loaded[reference][1]
    if ref_meta["model"] != "cnn" or ref_meta["model_kwargs"].get("batchnorm", True):
        raise ValueError(f"average_models needs CNNs without batch norm (their standardizations fold into the first "
                         f"and last convolutions); {refs[reference]} is a {ref_meta['model']} with "
                         f"batchnorm={ref_meta['model_kwargs'].get('batchnorm', True)}")
    keys = set(loaded[reference][0].state_dict())
    total = None
    for (model, meta), ref in zip(loaded, refs, strict=True):
        if meta["model"] != ref_meta["model"] or meta["model_kwargs"] != ref_meta["model_kwargs"]:
            raise ValueError(f"{ref}: another architecture than {refs[reference]} ({meta['model_kwargs']})")
        state = _in_reference_units(model.state_dict(), meta, ref_meta)
        if set(state) != keys:
            raise ValueError(f"{ref}: its weights do not match {refs[reference]}'s")
        total = state if total is None else {k: total[k] + state[k] for k in keys}
    template = loaded[reference][0].state_dict()
    mean = {k: (total[k] / len(loaded)).to(template[k].dtype) for k in keys}  # float64 sums, the models' dtype
    meta = dict(ref_meta)
    meta["averaged_from"] = [str(r) for r in refs]
    return model_from_meta(ref_meta, mean), meta


__all__ = ["available", "average_models", "export_checkpoint", "load_model", "model_from_meta", "predict_gamma",
           "save_model"]
