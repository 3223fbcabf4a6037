"""Error metrics of SPEC §3 on ocean cells: ε = (γ̂² − γ²)/γ²."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

METRIC_NAMES = ("rmse", "q9999", "max", "mean")


def relative_error(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """ε on ocean cells (where the reference is finite, or where ``mask`` is true), flattened."""
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate shape {estimate.shape} differs from reference shape {reference.shape}")
    ocean = np.isfinite(reference) if mask is None else np.asarray(mask, dtype=bool)
    if not ocean.any():
        raise ValueError("no ocean cell to compare")
    ref2 = reference[ocean] ** 2
    return (estimate[ocean] ** 2 - ref2) / ref2


def sample_metrics(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Per-sample RMSE, Q9999 = quantile(|ε|, 0.9999), max |ε| and mean |ε|."""
    eps = relative_error(estimate, reference, mask)
    if not np.all(np.isfinite(eps)):
        raise ValueError("estimate is NaN or inf on an ocean cell")
    abs_eps = np.abs(eps)
    return {
        "rmse": float(np.sqrt(np.mean(eps**2))),
        "q9999": float(np.quantile(abs_eps, 0.9999)),
        "max": float(abs_eps.max()),
        "mean": float(abs_eps.mean()),
    }


def aggregate_metrics(per_sample: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over samples: keys ``<name>`` and ``<name>_std``."""
    rows = list(per_sample)
    if not rows:
        raise ValueError("no samples to aggregate")
    out: dict[str, float] = {}
    for name in METRIC_NAMES:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std())
    return out
