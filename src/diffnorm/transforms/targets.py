"""What the network predicts, and back to γ.

Targets (all standardized with the mean/std over the ocean cells of the training split):

- ``gamma``: γ (the seed study);
- ``gamma2``: γ²; ``inv_gamma``: 1/γ; ``log_gamma``: ln γ;
- ``log_ratio_analytic``: ln(γ / γ_a), γ_a the analytic normalization of SPEC §2
  (:func:`analytic_prior`) — a physics prior: the network only learns the correction for coasts and
  diffusivity gradients (dimensionless, O(0.1)), not the scale of γ.

:meth:`TargetTransform.eps` gives SPEC §3's ε = (γ̂² − γ²)/γ² straight from predicted and true targets
(it depends only on the ratio γ̂/γ, so the prior cancels), in torch, differentiable.
"""

from __future__ import annotations

import numpy as np

TARGETS = ("gamma", "gamma2", "inv_gamma", "log_gamma", "log_ratio_analytic")


def analytic_prior(grid, steps: int) -> np.ndarray:
    """γ_a of :func:`diffnorm.normalization.analytic_normalization`, with cells where it is not finite
    or not positive (no active face on an axis) set to the median over the ocean; 1 on land."""
    from ..normalization import analytic_normalization

    with np.errstate(invalid="ignore", divide="ignore"):
        g = analytic_normalization(grid, steps)
    ok = grid.mask & np.isfinite(g) & (g > 0)
    fill = float(np.median(g[ok])) if ok.any() else 1.0
    g = np.where(ok, g, fill)
    return np.where(grid.mask, g, 1.0)


class TargetTransform:
    """``y = (f(γ) − mean) / std`` on ocean cells (0 on land); ``inverse`` gives γ back."""

    def __init__(self, kind: str = "gamma", mean: float = 0.0, std: float = 1.0):
        if kind not in TARGETS:
            raise ValueError(f"unknown target {kind!r}; choose one of {', '.join(TARGETS)}")
        self.kind = kind
        self.mean = float(mean)
        self.std = float(std)

    @property
    def needs_prior(self) -> bool:
        return self.kind == "log_ratio_analytic"

    def raw(self, gamma: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """f(γ) on ocean cells, 0 on land."""
        mask = np.asarray(mask, bool)
        g = np.where(mask, gamma, 1.0)
        if self.kind == "gamma":
            f = g
        elif self.kind == "gamma2":
            f = g**2
        elif self.kind == "inv_gamma":
            f = 1.0 / g
        elif self.kind == "log_gamma":
            f = np.log(g)
        else:
            if prior is None:
                raise ValueError("target log_ratio_analytic needs the analytic prior")
            f = np.log(g / prior)
        return np.where(mask, f, 0.0)

    def fit(self, raws: list[np.ndarray], masks: list[np.ndarray]) -> TargetTransform:
        vals = np.concatenate([r[np.asarray(m, bool)] for r, m in zip(raws, masks, strict=True)])
        self.mean = float(vals.mean())
        std = float(vals.std())
        self.std = std if std > 0 else 1.0
        return self

    def forward(self, gamma: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        mask = np.asarray(mask, bool)
        return np.where(mask, (self.raw(gamma, mask, prior) - self.mean) / self.std, 0.0)

    def inverse(self, y: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """γ (float64, NaN on land) from the standardized target."""
        f = np.asarray(y, dtype=np.float64) * self.std + self.mean
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if self.kind == "gamma":
                g = f
            elif self.kind == "gamma2":
                g = np.sqrt(f)
            elif self.kind == "inv_gamma":
                g = 1.0 / f
            elif self.kind == "log_gamma":
                g = np.exp(f)
            else:
                if prior is None:
                    raise ValueError("target log_ratio_analytic needs the analytic prior")
                g = prior * np.exp(f)
        return np.where(np.asarray(mask, bool), g, np.nan)

    def eps(self, pred, true):
        """ε = γ̂²/γ² − 1 from standardized predicted and true targets (torch tensors or numpy arrays)."""
        s, m = self.std, self.mean
        if self.kind in ("log_gamma", "log_ratio_analytic"):
            return _expm1(2.0 * s * (pred - true))
        p, t = pred * s + m, true * s + m
        if self.kind == "gamma":
            return (p / t) ** 2 - 1.0
        if self.kind == "gamma2":
            return p / t - 1.0
        return (t / p) ** 2 - 1.0  # inv_gamma

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> TargetTransform:
        return cls(d["kind"], d.get("mean", 0.0), d.get("std", 1.0))


def _expm1(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return torch.expm1(x)
    except ImportError:  # pragma: no cover
        pass
    return np.expm1(x)
