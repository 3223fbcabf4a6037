"""Geometry-aware padding of ``(batch, channels, ny, nx)`` tensors (TorchScript- and ONNX-friendly).

Periodic axes wrap (circular padding: the cells beyond the last column are the first ones);
closed axes are walls, padded with ``land`` (zeros: with the input transforms of
:mod:`diffnorm.transforms.inputs` a zero input is land/inactive) or by ``replicate``-ing the edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLOSED_MODES = ("land", "replicate")


def _pad_axis(x: torch.Tensor, m: int, dim: int, periodic: bool, closed: str) -> torch.Tensor:
    n = x.shape[dim]
    if periodic:
        if m > n:  # tile first (tiny grids)
            reps = [1, 1, 1, 1]
            reps[dim] = (m + n - 1) // n * 2 + 1
            big = x.repeat(reps)
            start = (reps[dim] // 2) * n - m
            return big.narrow(dim, start, n + 2 * m)
        return torch.cat([x.narrow(dim, n - m, m), x, x.narrow(dim, 0, m)], dim=dim)
    if closed == "replicate":
        reps = [1, 1, 1, 1]
        reps[dim] = m
        return torch.cat([x.narrow(dim, 0, 1).repeat(reps), x, x.narrow(dim, n - 1, 1).repeat(reps)], dim=dim)
    if dim == 2:
        return F.pad(x, [0, 0, m, m])
    return F.pad(x, [m, m, 0, 0])


def geo_pad(x: torch.Tensor, m: int, periodic_x: bool = False, periodic_y: bool = False,
            closed: str = "land") -> torch.Tensor:
    """Pad ``m`` cells on every side: along y (dim 2) first, then x (dim 3), so corners are consistent."""
    if m <= 0:
        return x
    x = _pad_axis(x, m, 2, periodic_y, closed)
    return _pad_axis(x, m, 3, periodic_x, closed)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The central ``h × w`` window of a ``(B, C, H, W)`` tensor (``H − h`` and ``W − w`` even)."""
    dy = (x.shape[2] - h) // 2
    dx = (x.shape[3] - w) // 2
    return x[:, :, dy:dy + h, dx:dx + w]
