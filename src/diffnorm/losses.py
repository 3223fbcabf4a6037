"""Training losses on ocean cells only (land never contributes).

- ``mse``: mean over ocean cells of (ŷ − y)² on the standardized target;
- ``relative``: the seed study's relative loss E[ε∘ε] with ε = (γ̂² − γ²)/γ² (SPEC §3) — the mean over the
  ocean cells of the batch of ε², i.e. RMSE² of SPEC §3 for one sample. (The study's code added 1 per land
  cell, a constant offset that only diluted the gradient; here land is excluded.)

Each loss is ``loss(pred, true, mask, target_transform)`` with ``(B, 1, ny, nx)`` tensors.
"""

from __future__ import annotations

import torch

LOSSES = ("mse", "relative")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def masked_mse(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, target=None) -> torch.Tensor:
    return masked_mean((pred - true) ** 2, mask)


def relative_loss(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, target) -> torch.Tensor:
    """E[ε²] over ocean cells; ``target`` is the :class:`~diffnorm.transforms.targets.TargetTransform`."""
    m = mask.bool()
    safe_true = torch.where(m, true, torch.zeros_like(true))
    safe_pred = torch.where(m, pred, torch.zeros_like(pred))
    if target.kind not in ("log_gamma", "log_ratio_analytic", "log_ratio_images"):  # keep land away from divisions by 0
        fill = torch.full_like(true, (1.0 - target.mean) / target.std)
        safe_true = torch.where(m, true, fill)
        safe_pred = torch.where(m, pred, fill)
    eps = target.eps(safe_pred, safe_true)
    return masked_mean(eps**2, mask)


def get_loss(name: str):
    if name == "mse":
        return masked_mse
    if name == "relative":
        return relative_loss
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
