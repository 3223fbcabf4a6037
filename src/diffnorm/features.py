"""Input features of the learning problem: signed distance to the coast and the analytic channel.

All functions are vectorized NumPy/SciPy on ``(ny, nx)`` arrays (no Python loop over cells).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid
from .normalization import analytic_normalization

DISTANCE_METRICS = ("manhattan", "euclidean")
FEATURES = ("mask", "area", "diff_x", "diff_y", "distance_manhattan", "distance_euclidean", "analytic")
#: :func:`coast_classes` codes, by index: how many of an ocean cell's four faces are closed (land or a wall), and
#: for two, whether they meet (a corner) or face each other (a one-cell-wide channel)
COAST_CLASSES = ("land", "open", "straight", "corner", "channel", "dead end", "isolated")


def _distance_to_zero(nonzero: np.ndarray, metric: str) -> np.ndarray:
    """Distance (cells, between centres) from every True cell to the nearest False cell."""
    if metric == "euclidean":
        return ndimage.distance_transform_edt(nonzero)
    return ndimage.distance_transform_cdt(nonzero, metric="taxicab").astype(np.float64)


def _periodic_distance(inside: np.ndarray, metric: str, periodic_x: bool, periodic_y: bool,
                       walls: bool) -> np.ndarray:
    """Distance from each True cell to the nearest False cell, periodic axes tiled 3×, and
    (with ``walls``) a ring of False cells beyond every non-periodic edge."""
    ny, nx = inside.shape
    reps = (3 if periodic_y else 1, 3 if periodic_x else 1)
    big = np.tile(inside, reps)
    pad = ((0 if periodic_y or not walls else 1,) * 2, (0 if periodic_x or not walls else 1,) * 2)
    big = np.pad(big, pad, constant_values=False)
    if big.all():  # nothing to measure a distance to: use the domain's diameter
        far = float(ny + nx) if metric == "manhattan" else float(np.hypot(ny, nx))
        return np.full(inside.shape, far)
    dist = _distance_to_zero(big, metric)
    y0 = pad[0][0] + (ny if periodic_y else 0)
    x0 = pad[1][0] + (nx if periodic_x else 0)
    return dist[y0:y0 + ny, x0:x0 + nx]


def signed_distance(mask: np.ndarray, metric: str = "euclidean", periodic_x: bool = False,
                    periodic_y: bool = False, walls: bool = True) -> np.ndarray:
    """Signed distance to the coast in cells: ``+d`` on ocean cells (``d`` = distance from the cell
    centre to the nearest land centre), ``−d`` on land (distance to the nearest ocean centre).

    An ocean cell next to land gets 1, a land cell next to the ocean −1. ``metric`` is
    ``"manhattan"`` (|Δi|+|Δj|) or ``"euclidean"``. Periodic axes wrap. With ``walls`` (default) a
    non-periodic edge counts as coast (it is a no-flux wall for the operator exactly like land):
    the edge row/column of ocean is at distance 1 from the land just outside. A domain with no
    land (and no walls) gets the domain diameter everywhere.
    """
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"unknown distance metric {metric!r}; choose one of {', '.join(DISTANCE_METRICS)}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (ny, nx), got shape {mask.shape}")
    ocean = mask.astype(bool)
    pos = _periodic_distance(ocean, metric, periodic_x, periodic_y, walls)
    if ocean.all():
        return pos
    neg = _periodic_distance(~ocean, metric, periodic_x, periodic_y, walls=False)
    return np.where(ocean, pos, -neg)


def grid_signed_distance(grid: Grid, metric: str = "euclidean", walls: bool = True) -> np.ndarray:
    """:func:`signed_distance` of a grid's mask with its periodic flags."""
    return signed_distance(grid.mask, metric, grid.periodic_x, grid.periodic_y, walls)


def coast_classes(grid: Grid) -> np.ndarray:
    """Int ``(ny, nx)`` index into :data:`COAST_CLASSES` of each cell's local coast geometry, for error
    diagnostics: the operator sees a coast only through its closed faces, so a channel cell (land on two
    opposite faces) diffuses in one dimension and a dead end in almost none."""
    east, north = ~grid.active_x, ~grid.active_y
    west, south = np.roll(east, 1, axis=1), np.roll(north, 1, axis=0)  # a wall's closed face wraps in too
    closed = east.astype(int) + west + north + south
    opposite = (east & west) | (north & south)
    code = np.array([1, 2, 3, 5, 6])[closed]  # open, straight, corner (two: see below), dead end, isolated
    code[(closed == 2) & opposite] = 4
    return np.where(grid.mask, code, 0)


def analytic_channel(grid: Grid, steps: int, fill: float = 0.0) -> np.ndarray:
    """The analytic normalization of SPEC §2 (:func:`diffnorm.normalization.analytic_normalization`)
    as an input channel, ``fill`` on land (and wherever it is undefined)."""
    gamma = analytic_normalization(grid, steps)
    return np.where(grid.mask & np.isfinite(gamma), gamma, fill)


def face_field(grid: Grid, name: str, fill: float = 0.0) -> np.ndarray:
    """``diff_x``/``diff_y`` with ``fill`` on inactive faces (they carry no information)."""
    active = grid.active_x if name == "diff_x" else grid.active_y
    return np.where(active, getattr(grid, name), fill)


def compute_features(grid: Grid, steps: int, names=FEATURES) -> dict[str, np.ndarray]:
    """Float64 ``(ny, nx)`` channels by name (see :data:`FEATURES`); land/inactive faces hold 0
    except for the signed distances, which are negative on land."""
    out = {}
    for name in names:
        if name == "mask":
            out[name] = grid.mask.astype(np.float64)
        elif name == "area":
            out[name] = np.where(grid.mask, grid.area, 0.0)
        elif name in ("diff_x", "diff_y"):
            out[name] = face_field(grid, name)
        elif name.startswith("distance_"):
            out[name] = grid_signed_distance(grid, name.split("_", 1)[1])
        elif name == "analytic":
            out[name] = analytic_channel(grid, steps)
        else:
            raise ValueError(f"unknown feature {name!r}; choose from {', '.join(FEATURES)}")
    return out
