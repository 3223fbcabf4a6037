"""Grid fields → the network's input channels ``(C, ny, nx)``.

Channels (``land`` = 0 after the transform unless said otherwise):

| name | value |
| --- | --- |
| ``mask`` | 1 ocean / 0 land (not standardized) |
| ``distance`` | signed Euclidean coast distance in cells (+ ocean, − land), clipped to ±20, / 10 (not standardized) |
| ``diff_x``, ``diff_y`` | log10 of the face diffusivity on active faces (0 on inactive faces) |
| ``area`` | log10 of the cell area |
| ``sf_diff_x``, ``sf_diff_y`` | scale-free: log10(diff / sqrt(area·area')) on active faces, area' the neighbour's |
| ``area_ratio_x``, ``area_ratio_y`` | ln(area'/area) on active faces |
| ``analytic`` | log10 of the analytic γ_a (:func:`~diffnorm.transforms.targets.analytic_prior`) |
| ``analytic_sf`` | scale-free analytic: log10(γ_a² / area) |
| ``images_wall_x``, ``images_wall_y`` | the images prior's wall factors along x / y alone: ln(v_x / v_free), 0 in the |
| | open ocean (:func:`~diffnorm.normalization.image_wall_factors`) |

Why scale-free: with ``S = W^{-1/2} K W^{-1/2}`` one has ``γ_i² / W_i = 1 / [(I + S)^{-M}]_ii`` — γ²/W depends
only on the ratios diff/sqrt(area·area') (and area'/area on the diagonal), so these channels plus the
``log_ratio_analytic`` target make the problem independent of units and of the grid's cell size.

Every channel but ``mask`` and ``distance`` is standardized with the mean/std over the ocean cells
(active faces for face channels) of the training split (:meth:`InputTransform.fit`).
"""

from __future__ import annotations

import numpy as np

from ..grid import Grid

CHANNELS = ("mask", "distance", "diff_x", "diff_y", "area", "sf_diff_x", "sf_diff_y", "area_ratio_x",
            "area_ratio_y", "analytic", "analytic_sf", "images_wall_x", "images_wall_y")
FIXED = ("mask", "distance")
#: face channels and their axis (they move like diff_x/diff_y under flips and transposes)
FACE_AXIS = {"diff_x": "x", "diff_y": "y", "sf_diff_x": "x", "sf_diff_y": "y", "area_ratio_x": "x",
             "area_ratio_y": "y"}
#: face channels that are differences across the face (seen from the other cell they change sign): a flip along
#: their axis negates them (:func:`diffnorm.transforms.augmentation.augment_arrays`, ``odd``)
ODD_FACE_CHANNELS = frozenset({"area_ratio_x", "area_ratio_y"})
#: cell channels with an axis: a transpose swaps them (flips keep them)
CELL_AXIS_PAIRS = {"images_wall_x": "images_wall_y", "images_wall_y": "images_wall_x"}
STUDY_CHANNELS = ("diff_x", "diff_y", "area", "mask")


def grid_from_fields(fields: dict) -> Grid:
    """A :class:`Grid` from a dict with ``mask``, ``area``, ``diff_x``, ``diff_y`` (+ ``periodic_x/y``)."""
    mask = np.asarray(fields["mask"])
    mask = np.where(np.isfinite(mask), mask, 0).astype(np.int8)
    return Grid(mask, fields["area"], fields["diff_x"], fields["diff_y"],
                bool(fields.get("periodic_x", False)), bool(fields.get("periodic_y", False)))


def _face(grid: Grid, axis: str) -> tuple[np.ndarray, np.ndarray]:
    active = grid.active_x if axis == "x" else grid.active_y
    other = np.roll(grid.area, -1, axis=1 if axis == "x" else 0)
    return active, other


def raw_channels(grid: Grid, steps: int, channels, prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unstandardized channels ``(C, ny, nx)`` float64 and the validity mask of each ``(C, ny, nx)``."""
    ocean = grid.mask
    area = np.where(ocean, grid.area, 1.0)
    out, valid = [], []
    need_prior = any(c in ("analytic", "analytic_sf") for c in channels)
    if need_prior and prior is None:
        from .targets import analytic_prior

        prior = analytic_prior(grid, steps)
    for c in channels:
        if c == "mask":
            v, ok = ocean.astype(np.float64), np.ones_like(ocean)
        elif c == "distance":
            from ..features import grid_signed_distance
            from .geometry import geometry_cached

            v = geometry_cached("distance", grid, lambda: np.clip(grid_signed_distance(grid, "euclidean"), -20, 20)
                                / 10.0)
            ok = np.ones_like(ocean)
        elif c in ("diff_x", "diff_y", "sf_diff_x", "sf_diff_y", "area_ratio_x", "area_ratio_y"):
            axis = FACE_AXIS[c]
            active, other = _face(grid, axis)
            other = np.where(active, other, 1.0)
            d = np.where(active, getattr(grid, "diff_" + axis), 1.0)
            ok = active & (d > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                if c.startswith("diff"):
                    v = np.log10(np.where(ok, d, 1.0))
                elif c.startswith("sf_"):
                    v = np.log10(np.where(ok, d, 1.0) / np.sqrt(area * other))
                else:
                    ok = active
                    v = np.log(other / area)
        elif c == "area":
            v, ok = np.log10(area), ocean
        elif c == "analytic":
            v, ok = np.log10(prior), ocean
        elif c == "analytic_sf":
            v, ok = np.log10(prior**2 / area), ocean
        elif c in ("images_wall_x", "images_wall_y"):
            from ..normalization import image_wall_factors

            v, ok = image_wall_factors(grid, steps)[0 if c.endswith("x") else 1], ocean
        else:
            raise ValueError(f"unknown input channel {c!r}; choose from {', '.join(CHANNELS)}")
        out.append(np.where(ok, v, 0.0))
        valid.append(np.asarray(ok, bool))
    return np.stack(out), np.stack(valid)


def augment_channels(x: np.ndarray, valid: np.ndarray, channels, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw channels ``(C, ny, nx)`` and their validity of a grid → those of the transformed grid
    (:func:`diffnorm.transforms.augmentation.augment_grid`), without recomputing them: face channels shift and
    trade x/y names, area ratios change sign on flips along their axis, axis-bound cell channels trade names on a
    transpose (tested against :func:`raw_channels` of the transformed grid for every channel and symmetry)."""
    from .augmentation import augment_arrays

    channels = list(channels)
    if transform == "identity":
        return x, valid
    faces = {c: a for c, a in FACE_AXIS.items() if c in channels}
    pairs = {c: o for c, o in CELL_AXIS_PAIRS.items() if c in channels}
    out = augment_arrays({c: x[k] for k, c in enumerate(channels)}, transform, faces, pairs, odd=ODD_FACE_CHANNELS)
    ok = augment_arrays({c: valid[k] for k, c in enumerate(channels)}, transform, faces, pairs)
    return np.stack([out[c] for c in channels]), np.stack([ok[c] for c in channels])


class InputTransform:
    """Computes, standardizes and (de)serializes the input channels; see the module docstring."""

    def __init__(self, channels=STUDY_CHANNELS, mean=None, std=None):
        channels = list(channels)
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown input channel(s) {unknown}; choose from {', '.join(CHANNELS)}")
        self.channels = channels
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)

    def raw(self, grid: Grid, steps: int, prior=None):
        return raw_channels(grid, steps, self.channels, prior)

    def fit(self, raws: list[tuple[np.ndarray, np.ndarray]]) -> InputTransform:
        """Mean/std per channel over valid cells of every training sample (``raws`` from :meth:`raw`)."""
        n = len(self.channels)
        mean, std = np.zeros(n), np.ones(n)
        for k, c in enumerate(self.channels):
            if c in FIXED:
                continue
            vals = np.concatenate([x[k][ok[k]] for x, ok in raws])
            if vals.size:  # accumulated in float64 for float32 fields too, without a float64 copy
                mean[k] = vals.mean(dtype=np.float64)
                s = vals.std(dtype=np.float64)
                std[k] = s if s > 0 else 1.0
        self.mean, self.std = mean, std
        return self

    def apply(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("InputTransform is not fitted; call fit() on the training split")
        z = (x - self.mean[:, None, None]) / self.std[:, None, None]
        return np.where(valid, z, 0.0).astype(np.float32)

    def flipped(self, raw: np.ndarray, valid: np.ndarray, transforms) -> np.ndarray:
        """Standardized inputs ``(T, C, ny, nx)`` of a grid's transformed copies, from its raw channels
        (:func:`augment_channels`: nothing is recomputed) — what test-time augmentation feeds the network."""
        return np.stack([self.apply(*augment_channels(raw, valid, self.channels, t)) for t in transforms])

    def __call__(self, grid: Grid, steps: int, prior=None) -> np.ndarray:
        """Standardized ``(C, ny, nx)`` float32 input of one grid."""
        return self.apply(*self.raw(grid, steps, prior))

    def to_dict(self) -> dict:
        return {"channels": list(self.channels),
                "mean": None if self.mean is None else [float(v) for v in self.mean],
                "std": None if self.std is None else [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> InputTransform:
        return cls(d["channels"], d.get("mean"), d.get("std"))
