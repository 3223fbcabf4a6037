"""Geometry-only inputs of the training code (coast distance, small components) through :mod:`diffnorm.cache`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..cache import cached, clear, geometry_key  # noqa: F401  (re-exported)


def geometry_cached(name: str, grid, compute: Callable[[], np.ndarray], *params) -> np.ndarray:
    """``compute()`` (a function of ``grid``'s geometry and ``params`` only), computed once per geometry."""
    return cached(name, grid.mask, grid.periodic_x, grid.periodic_y, lambda: np.asarray(compute()), *params)
