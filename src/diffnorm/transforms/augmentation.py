"""Symmetry augmentation of C-grid samples (the seed study's section 6), done right.

The eight symmetries of the square (dihedral group D4) are built from three primitives that
keep the Arakawa C-grid consistent (SPEC §1: ``diff_x[j, i]`` on the EAST face, ``diff_y[j, i]``
on the NORTH face):

- ``flip_x`` (mirror west↔east): cell fields ``a[:, ::-1]``; an east face becomes a west face,
  i.e. the east face of the mirrored cell's western neighbour: ``diff_x ← roll(diff_x[:, ::-1], -1, x)``;
  ``diff_y`` is mirrored like a cell field.
- ``flip_y`` (mirror south↔north): the same along y.
- ``transpose`` (swap axes): cell fields ``a.T``; ``diff_x ← diff_y.T``, ``diff_y ← diff_x.T``;
  ``periodic_x`` and ``periodic_y`` swap.

Rotations compose them (as :func:`numpy.rot90`, counter-clockwise in array index space):
``rot90 = flip_y ∘ transpose``, ``rot180 = flip_x ∘ flip_y``, ``rot270 = transpose ∘ flip_y``;
``antitranspose = rot90 ∘ flip_y``. The wrap face of a periodic axis stays the wrap face and the
masked (inactive) faces stay masked, so land stays land and the operator is only relabelled:
the exact γ of a transformed grid is the transformed γ (tested to 1e-10).

Transform *raw* fields, then standardize (:func:`augment_and_standardize`): never transform
standardized data and standardize it again (the study's script did, corrupting most outputs).
Everything here is a vectorized index permutation (no loops over cells).
"""

from __future__ import annotations

import numpy as np

from ..grid import Grid

PRIMITIVES = ("flip_x", "flip_y", "transpose")
# each transform as primitives applied left to right
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "identity": (),
    "flip_x": ("flip_x",),
    "flip_y": ("flip_y",),
    "rot90": ("transpose", "flip_y"),
    "rot180": ("flip_x", "flip_y"),
    "rot270": ("flip_y", "transpose"),
    "transpose": ("transpose",),
    "antitranspose": ("flip_y", "transpose", "flip_y"),
}
DEFAULT_FACES = {"diff_x": "x", "diff_y": "y"}


def random_transform(rng: np.random.Generator, transforms=tuple(TRANSFORMS)) -> str:
    """One transform name drawn uniformly (e.g. per sample in a PyTorch Dataset)."""
    transforms = tuple(transforms)
    for t in transforms:
        _steps(t)
    return transforms[int(rng.integers(len(transforms)))]


def _steps(transform: str) -> tuple[str, ...]:
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    return TRANSFORMS[transform]


def _flip(a: np.ndarray, axis: int, face: bool) -> np.ndarray:
    """Mirror along ``axis`` (−1 = x, −2 = y) of the last two axes; faces on that axis move by one cell."""
    out = np.flip(a, axis=axis)
    return np.roll(out, -1, axis=axis) if face else out


def augment_cell_field(a: np.ndarray, transform: str) -> np.ndarray:
    """Transform a cell-centred field (mask, area, γ, distances, …) over its last two axes."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"a field needs at least 2 dimensions (…, ny, nx), got shape {a.shape}")
    for step in _steps(transform):
        if step == "flip_x":
            a = _flip(a, -1, False)
        elif step == "flip_y":
            a = _flip(a, -2, False)
        else:
            a = np.swapaxes(a, -1, -2)
    return np.ascontiguousarray(a)


def augment_arrays(arrays: dict[str, np.ndarray], transform: str,
                   faces: dict[str, str] | None = None, pairs: dict[str, str] | None = None,
                   odd: frozenset[str] | set[str] | tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Transform named raw arrays ``(…, ny, nx)`` together.

    ``faces`` maps the names of face fields to their axis (default ``{"diff_x": "x", "diff_y": "y"}``):
    they shift on flips along their axis and trade names on a transpose (they must come in x/y
    pairs then). ``odd`` names face fields that are differences across the face (``ln(area′/area)``: seen
    from the other cell, the sign changes): they also change sign on a flip along their axis. Every other
    array is a cell field; ``pairs`` names cell fields that mean something along one axis
    (``{"images_wall_x": "images_wall_y", ...}``, both ways): they trade names on a transpose too.
    """
    faces = dict(DEFAULT_FACES if faces is None else faces)
    for name, axis in faces.items():
        if axis not in ("x", "y"):
            raise ValueError(f"face axis of {name!r} must be 'x' or 'y', got {axis!r}")
    out = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in out.items():
        if v.ndim < 2:
            raise ValueError(f"{k} needs at least 2 dimensions (…, ny, nx), got shape {v.shape}")
    present = {k: a for k, a in faces.items() if k in out}
    partner = {}
    if "transpose" in _steps(transform):
        xs = [k for k, a in present.items() if a == "x"]
        ys = [k for k, a in present.items() if a == "y"]
        if len(xs) != len(ys):
            raise ValueError(f"a transposing transform needs face fields in x/y pairs, got x: {xs}, y: {ys}")
        partner = dict(zip(xs, ys, strict=True)) | dict(zip(ys, xs, strict=True))
    axis_of = dict(present)
    for step in _steps(transform):
        new = {}
        for k, a in out.items():
            face_axis = axis_of.get(k)
            if step in ("flip_x", "flip_y"):
                along = face_axis == step[-1]  # a face field on the mirrored axis: shifts, and odd ones negate
                new[k] = _flip(a, -1 if step == "flip_x" else -2, along)
                if along and k in odd:
                    new[k] = -new[k]
            else:
                new[k] = np.swapaxes(a, -1, -2)
        if step == "transpose" and (partner or pairs):
            # the transposed y-face field is now an x-face field: it takes its partner's name
            swap = {**{k: v for k, v in (pairs or {}).items() if k in out and v in out}, **partner}
            new = {swap.get(k, k): v for k, v in new.items()}
        out = new
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def augment_grid(grid: Grid, transform: str) -> Grid:
    """The same ocean drawn differently: a new :class:`Grid` with consistent faces and flags."""
    fields = {"mask": grid.mask, "area": grid.area, "diff_x": grid.diff_x, "diff_y": grid.diff_y}
    for name in ("lat", "lon"):
        if getattr(grid, name) is not None:
            fields[name] = getattr(grid, name)
    new = augment_arrays(fields, transform)
    px, py = grid.periodic_x, grid.periodic_y
    if "transpose" in _steps(transform):
        px, py = py, px
    attrs = dict(grid.attrs)
    if transform != "identity":
        attrs["augmentation"] = transform
    return Grid(new["mask"], new["area"], new["diff_x"], new["diff_y"], px, py,
                new.get("lat"), new.get("lon"), attrs)


def augment_sample(grid: Grid, gamma: np.ndarray | None, transform: str) -> tuple[Grid, np.ndarray | None]:
    """Transform a grid and its label γ together."""
    return augment_grid(grid, transform), (None if gamma is None else augment_cell_field(gamma, transform))


def augment_and_standardize(raw: dict[str, np.ndarray], transform: str, standardizer, channels: list[str],
                            mask: str = "mask", faces: dict[str, str] | None = None) -> np.ndarray:
    """Re-standardization from the untouched originals: transform the RAW arrays, then standardize.

    ``raw`` holds unstandardized ``(ny, nx)`` (or ``(N, ny, nx)``) arrays by name, including the
    ocean mask under ``mask``; ``channels`` picks and orders the channels the fitted
    ``standardizer`` expects. Returns ``(C, ny', nx')`` (or ``(N, C, ny', nx')``). A transposing
    transform puts the former ``diff_y`` values in the ``diff_x`` channel, standardized with the
    ``diff_x`` statistics (fit the standardizer on augmented training data if the two
    distributions differ and that matters).
    """
    if mask not in raw:
        raise ValueError(f"raw arrays need the ocean mask under {mask!r}")
    missing = [c for c in channels if c not in raw]
    if missing:
        raise ValueError(f"raw arrays lack channel(s): {', '.join(missing)}")
    new = augment_arrays(raw, transform, faces)
    stack = np.stack([np.asarray(new[c], dtype=np.float64) for c in channels], axis=-3)
    return standardizer.transform(stack, new[mask].astype(bool))


# -- test-time augmentation ---------------------------------------------------------------
#: the symmetries that keep a field's shape and periodicity (what ``augment: true`` trains on)
FLIPS: tuple[str, ...] = ("identity", "flip_x", "flip_y", "rot180")
#: named test-time augmentation sets
TTA_SETS: dict[str, tuple[str, ...]] = {"none": ("identity",), "flips": FLIPS}
#: what the command line takes: "model" (the model's own setting) or a set name
TTA_CHOICES: tuple[str, ...] = ("model", *TTA_SETS)


def tta_transforms(tta: str | list[str] | tuple[str, ...] | None, model_tta=None) -> tuple[str, ...]:
    """The transforms of a test-time augmentation setting: a set name (``"none"``, ``"flips"``), a list of
    names from :data:`FLIPS`, None (``"none"``) or ``"model"``: the model's own setting ``model_tta`` (its meta
    data's ``"tta"``; none if absent).

    Only the flips: each is its own inverse and keeps the grid's shape and periodicity, so the network pads
    the transformed field exactly as the original (a transpose would swap a periodic longitude into y).
    """
    if tta == "model":
        tta = model_tta
    if tta is None:
        return TTA_SETS["none"]
    if isinstance(tta, str):
        if tta not in TTA_SETS:
            raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_SETS)} or a list "
                             f"of {', '.join(FLIPS)}")
        return TTA_SETS[tta]
    names = tuple(str(t) for t in tta)
    bad = [t for t in names if t not in FLIPS]
    if bad or not names:
        raise ValueError(f"test-time augmentation takes transforms from {', '.join(FLIPS)} (each its own inverse, "
                         f"keeping shape and periodicity); got {list(names)}")
    return names


def tta_mean(outputs: np.ndarray, transforms) -> np.ndarray:
    """Mean of the network outputs ``(T, ny, nx)`` on the flipped grids, each flipped back first (the flips are
    their own inverses)."""
    return np.mean([augment_cell_field(a, t) for a, t in zip(outputs, transforms, strict=True)], axis=0)
