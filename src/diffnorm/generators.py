"""Seeded random diffusivity fields expressed through a correlation length scale.

A length scale ``L`` (in local grid cells, unit ``sqrt(dx·dy)``) maps to ``κΔt = L²·dx·dy/(2M)``:
M implicit steps then spread a point over about a Gaussian of standard deviation ``L`` cells.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def smooth_noise(shape: tuple[int, int], smoothing: float, rng: np.random.Generator,
                 periodic_x: bool = False, periodic_y: bool = False) -> np.ndarray:
    """Gaussian noise smoothed over ``smoothing`` cells, rescaled to zero mean, unit std."""
    noise = rng.standard_normal(shape)
    mode = ("wrap" if periodic_y else "reflect", "wrap" if periodic_x else "reflect")
    field = gaussian_filter(noise, sigma=smoothing, mode=mode)
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def length_scale_field(shape: tuple[int, int], seed: int | None, min_cells: float = 1.5,
                       max_cells: float = 4.0, smoothing: float = 10.0, periodic_x: bool = False,
                       periodic_y: bool = False) -> np.ndarray:
    """Smooth random length scale in cells, log-uniform-like between ``min_cells`` and ``max_cells``."""
    if not 0 < min_cells <= max_cells:
        raise ValueError(f"need 0 < min_cells <= max_cells, got {min_cells}, {max_cells}")
    rng = np.random.default_rng(seed)
    u = smooth_noise(shape, smoothing, rng, periodic_x, periodic_y)
    # map N(0,1)-ish values through a logistic onto [log min, log max]
    s = 1.0 / (1.0 + np.exp(-1.7 * u))
    return np.exp(np.log(min_cells) + s * (np.log(max_cells) - np.log(min_cells)))


def kappa_dt_from_length_scale(length_cells: np.ndarray, dx: np.ndarray, dy: np.ndarray, steps: int) -> np.ndarray:
    """``κΔt = L² dx dy / (2M)`` so that M steps spread over ~L cells."""
    return length_cells**2 * dx * dy / (2.0 * steps)
