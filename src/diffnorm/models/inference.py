"""Fast inference of a trained network on whole grids (what ``predict`` runs; training does not use it).

:func:`forward_ocean` gives the same γ as ``model(x)`` on the ocean cells (to float32 rounding, < 1e-5 in
the standardized output, i.e. < 1e-6 relative in γ for the shipped model), faster on the CPU:

- **only the rows/columns that hold ocean** (plus the receptive field ``margin``) are run through a
  valid-padding :class:`~diffnorm.models.cnn.CNN` along closed axes: a valid-padding network's output at a
  cell depends on the ``margin`` cells around it only, so the land rows beyond the ocean's bounding box
  (polar caps: 40 of 180 rows on the 1° sphere grid) need not be computed. Their output is 0 (land; γ is NaN
  there anyway). Not done for ``padding="same"`` networks or U-Nets (their zero padding inside the network
  would move);
- **batch norm folded into the convolutions** (eval mode: ``BN(conv(x))`` is one convolution with rescaled
  weights), ReLUs in place, and on the CPU the **channels-last** memory layout, for which oneDNN's
  convolutions are about 1.5× faster here than NCHW. The folded copy is cached per model and rebuilt when a
  parameter or buffer changes (version counter, storage);
- on the CPU, **one grid at a time**: a batch of whole grids (the four flips of test-time augmentation, or several
  fields) is run sample by sample, each in its own ocean window. A 1° grid's activations (48 filters: 16 MB per
  sample and layer) already fill the caches, so a batch of four took 1.6× as long as four single passes on this
  project's CPU; on a GPU the batch runs whole.

A model in training mode, or any other kind of network, runs unchanged (``model(x)``).

``precision="bf16"`` runs the hidden layers in bfloat16 (autocast; the output layer stays float32): on CPUs with
AMX / AVX512-BF16 units the 32-filter ``sphere-1deg`` network runs 3.5x faster (its whole prediction 1.6-1.9x),
at about 2 % of ε_mean; elsewhere bf16 is emulated and slower.
"""

from __future__ import annotations

import copy
import warnings
import weakref

import numpy as np
import torch
from torch import nn

from .cnn import CNN
from .padding import geo_pad

_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: the arithmetic a prediction can run the network in
PRECISIONS = ("32", "bf16")


def check_precision(precision: str) -> str:
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 on this CPU's own units (AVX-512 or AMX, or Arm's bf16); elsewhere it emulates it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return torch.backends.cpu.get_cpu_capability() == "AVX512"


def warn_if_bf16_emulated(precision: str, device) -> None:
    """Warn that ``precision="bf16"`` on ``device`` is slower than float32: a CPU without bf16 units emulates it."""
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu_has_bf16():
        warnings.warn("precision bf16 on this CPU, which has no bf16 units (no AVX-512 or AMX): bf16 is emulated "
                      "there and slower than the default float32", UserWarning, stacklevel=3)


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference tensor (made under torch.inference_mode) has no version counter
        return -1


def _state_key(model: nn.Module) -> tuple:
    return tuple((id(t), _version(t), t.data_ptr(), t.device, t.dtype)
                 for t in (*model.parameters(), *model.buffers()))


def _fold(model: CNN, channels_last: bool) -> CNN:
    """An eval-mode copy of ``model`` with every ``BatchNorm2d`` folded into its convolution."""
    with torch.inference_mode(False), torch.no_grad():
        net = copy.deepcopy(model).eval()
        _fold_modules(net)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
    return net


def _fold_modules(net: nn.Module) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in net.modules():
        bn = getattr(mod, "bn", None)
        if isinstance(bn, nn.BatchNorm2d) and isinstance(getattr(mod, "conv", None), nn.Conv2d):
            mod.conv = fuse_conv_bn_eval(mod.conv, bn)
            mod.bn = nn.Identity()
        if isinstance(mod, nn.ReLU):  # every ReLU acts on a fresh tensor (conv output or the residual sum)
            mod.inplace = True
    for p in net.parameters():
        p.requires_grad_(False)


def folded(model: CNN, channels_last: bool = False) -> CNN:
    """The cached batch-norm-folded copy of an eval-mode :class:`CNN` (see the module docstring)."""
    key = (_state_key(model), channels_last)
    hit = _FOLDED.get(model)
    if hit is None or hit[0] != key:
        hit = (key, _fold(model, channels_last))
        _FOLDED[model] = hit
    return hit[1]


def ocean_window(ocean: np.ndarray, axis: int) -> tuple[int, int] | None:
    """``(first, last + 1)`` of the rows (``axis=0``) or columns (``axis=1``) of ``ocean`` (``(ny, nx)`` or
    ``(B, ny, nx)``) that hold an ocean cell; None without ocean."""
    ocean = np.asarray(ocean, bool)
    if ocean.ndim == 3:
        ocean = ocean.any(axis=0)
    hit = np.flatnonzero(ocean.any(axis=1 - axis))
    return None if hit.size == 0 else (int(hit[0]), int(hit[-1]) + 1)


def forward_ocean(model: nn.Module, x: torch.Tensor, ocean: np.ndarray | None = None,
                  precision: str = "32") -> torch.Tensor:
    """``model(x)`` for a ``(B, C, ny, nx)`` batch, exact on the ``ocean`` cells (``(ny, nx)`` or ``(B, ny, nx)``
    boolean; None: everywhere) and fast; see the module docstring. Call it under ``torch.inference_mode()``.
    ``precision``: "32" (float32) or "bf16" (hidden layers in bfloat16; the output is float32)."""
    bf16 = check_precision(precision) == "bf16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        y = _forward_ocean(model, x, ocean)
    return y.float() if bf16 and isinstance(y, torch.Tensor) else y


def _forward_ocean(model: nn.Module, x: torch.Tensor, ocean: np.ndarray | None) -> torch.Tensor:
    if not isinstance(model, CNN) or model.training or model.padding != "valid" or model.margin <= 0:
        return model(x)
    ny, nx = x.shape[2], x.shape[3]
    if ocean is not None:
        ocean = np.asarray(ocean, bool)
        if ocean.shape[-2:] != (ny, nx) or (ocean.ndim == 3 and ocean.shape[0] != x.shape[0]):
            raise ValueError(f"ocean mask of shape {ocean.shape} for an input of {tuple(x.shape)}")
    cpu = x.device.type == "cpu"
    net = folded(model, channels_last=cpu)
    if cpu and x.shape[0] > 1:  # one grid at a time (module docstring)
        return torch.cat([_forward_window(model, net, x[k:k + 1], None if ocean is None else
                                          ocean[k] if ocean.ndim == 3 else ocean) for k in range(x.shape[0])])
    return _forward_window(model, net, x, ocean)


def _forward_window(model: CNN, net: CNN, x: torch.Tensor, ocean: np.ndarray | None) -> torch.Tensor:
    """``net`` (``model``'s folded copy) on the window of ``x`` that holds ocean (plus the margin), zero outside.
    The geometry (periodicity, closed sides) is read from ``model``: the folded copy is cached by weights, and a
    predictor may set a model's periodicity per grid after the copy was made."""
    cpu = x.device.type == "cpu"
    m = model.margin
    ny, nx = x.shape[2], x.shape[3]
    rows, cols = (0, ny), (0, nx)
    if ocean is not None:
        if not model.periodic_y:
            rows = ocean_window(ocean, 0) or rows
        if not model.periodic_x:
            cols = ocean_window(ocean, 1) or cols
    xp = geo_pad(x, m, model.periodic_x, model.periodic_y, model.closed)
    xp = xp[:, :, rows[0]:rows[1] + 2 * m, cols[0]:cols[1] + 2 * m]
    if cpu:
        xp = xp.contiguous(memory_format=torch.channels_last)
    y = net.body(xp)
    if (rows, cols) == ((0, ny), (0, nx)):
        return y.contiguous()
    out = y.new_zeros((y.shape[0], y.shape[1], ny, nx))
    out[:, :, rows[0]:rows[1], cols[0]:cols[1]] = y
    return out
