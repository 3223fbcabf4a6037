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


# -- diffusivity generators ---------------------------------------------------------------
GENERATORS = ("constant", "isotropic", "anisotropic", "equatorial", "study")

_DEFAULTS = {
    "constant": {"length": 2.5, "units": "cells"},
    "isotropic": {"min_length": 1.5, "max_length": 4.0, "smoothing": 10.0, "units": "cells",
                  "coast_length": None, "coast_ramp": [2.0, 5.0]},
    "anisotropic": {"min_length_x": 1.5, "max_length_x": 6.0, "min_length_y": 1.0, "max_length_y": 3.0,
                    "smoothing": 10.0, "units": "cells", "coast_length": None, "coast_ramp": [2.0, 5.0]},
    "equatorial": {"min_length": 1.5, "max_length": 4.0, "smoothing": 10.0, "units": "cells",
                   "coast_length": None, "coast_ramp": [2.0, 5.0],
                   "band_width": 6.0, "band_amplitude": 15.0, "preserve_mean": True},
    # the seed study's sphere samples, as measured on its shipped file (the README, "Training data"): open-ocean ℓ of
    # 224-271 km (median 246) correlated over ~5 cells, ℓ = 124.5 km within 2 cells of the coast, zonal band ratio 16
    "study": {"min_length": 224.0, "max_length": 271.0, "smoothing": 5.5, "units": "km",
              "coast_length": 124.5, "coast_ramp": [2.0, 5.0],
              "band_width": 6.0, "band_amplitude": 16.0, "preserve_mean": True},
}


def generator_params(generator: str, params: dict | None = None) -> dict:
    """The full parameter set of ``generator``: defaults overridden by ``params`` (unknown keys are errors)."""
    if generator not in _DEFAULTS:
        raise ValueError(f"unknown diffusivity generator {generator!r}; choose one of {', '.join(GENERATORS)}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(_DEFAULTS[generator]))
    if unknown:
        raise ValueError(f"unknown parameter(s) for generator {generator!r}: {', '.join(unknown)}; "
                         f"known: {', '.join(_DEFAULTS[generator])}")
    out = {**_DEFAULTS[generator], **params}
    if out["units"] not in ("cells", "km"):
        raise ValueError(f"units must be 'cells' or 'km', got {out['units']!r}")
    for suffix in ("", "_x", "_y"):
        lo, hi = out.get(f"min_length{suffix}"), out.get(f"max_length{suffix}")
        if lo is not None and not 0 < lo <= hi:
            raise ValueError(f"need 0 < min_length{suffix} <= max_length{suffix}, got {lo}, {hi}")
    if out.get("smoothing", 1.0) <= 0:
        raise ValueError(f"smoothing must be > 0 cells, got {out['smoothing']}")
    if out.get("coast_length") is not None:
        if not out["coast_length"] > 0:
            raise ValueError(f"coast_length must be > 0 (or None), got {out['coast_length']}")
        ramp = out["coast_ramp"]
        if len(ramp) != 2 or not 0 <= ramp[0] < ramp[1]:
            raise ValueError(f"coast_ramp must be [d0, d1] with 0 <= d0 < d1 cells, got {ramp}")
        out["coast_ramp"] = [float(ramp[0]), float(ramp[1])]
    return out


def coastal_weight(mask: np.ndarray, ramp, periodic_x: bool = False, periodic_y: bool = False) -> np.ndarray:
    """``clip((d − d0)/(d1 − d0), 0, 1)`` with ``d`` the Manhattan distance to the coast in cells
    (:func:`diffnorm.features.signed_distance`, walls count as coast): 0 up to ``d0`` cells from
    land, 1 from ``d1`` on, linear between."""
    from .features import signed_distance

    d = signed_distance(mask, "manhattan", periodic_x, periodic_y)
    d0, d1 = ramp
    return np.clip((d - d0) / (d1 - d0), 0.0, 1.0)


def equatorial_enhancement(lat: np.ndarray, width: float = 6.0, amplitude: float = 15.0) -> np.ndarray:
    """Zonal/meridional anisotropy ratio ``r = 1 + (A−1)·exp(−(φ/w)²)`` (φ, w in degrees).

    ``A`` at the equator, 1 + (A−1)/e at ±w (6.2 for the defaults), 1 + (A−1)/e⁴ at ±2w (1.26).
    Fitted on the seed study's shipped sample, whose κx/κy is about 14 at 2.5°, 10 at 3.5°,
    3.6 at 8.5° and 1 beyond 14°.
    """
    if width <= 0 or amplitude < 1:
        raise ValueError(f"need band_width > 0 and band_amplitude >= 1, got {width}, {amplitude}")
    lat = np.asarray(lat, dtype=np.float64)
    return 1.0 + (amplitude - 1.0) * np.exp(-((lat / width) ** 2))


def _kappa_dt(length: np.ndarray, cell: np.ndarray, units: str, steps: int) -> np.ndarray:
    """``κΔt = ℓ²/(2M)`` with ℓ the length in metres (cells × local cell size, or km × 1000)."""
    metres = length * cell if units == "cells" else length * 1000.0
    return metres**2 / (2.0 * steps)


def generate_grid(geometry, mask: np.ndarray, generator: str = "isotropic", params: dict | None = None,
                  seed: int | None = 0, steps: int = 10):
    """A :class:`~diffnorm.grid.Grid` with seeded random face diffusivities (stable entry point of data sets).

    ``geometry`` is any family geometry (:mod:`diffnorm.families`: ``LatLonGeometry``,
    ``SphereGeometry``, ``CurvilinearGeometry``), ``mask`` its ocean mask. A correlation length
    ``ℓ`` (the standard deviation, in metres, of the Gaussian a point spreads into after ``steps``
    implicit steps) becomes ``κΔt = ℓ²/(2M)`` at cell centres, then ``diff = κ_face·Δt·factor``
    (SPEC §1, faces by averaging). Lengths in ``units="cells"`` are multiplied by the local cell
    size: ``sqrt(dx·dy)`` for isotropic fields, ``dx`` (``dy``) for the x (y) length of anisotropic ones;
    ``units="km"`` are absolute.

    Generators (parameters and defaults in :func:`generator_params`):

    - ``constant``: ``ℓ = length`` everywhere;
    - ``isotropic``: ``ℓ(x)`` a smooth random field between ``min_length`` and ``max_length``
      (:func:`length_scale_field`: Gaussian noise smoothed over ``smoothing`` cells, standardized,
      pushed through a logistic onto ``[log min, log max]``, so log ℓ is roughly uniform in the middle
      of the range with tails compressed towards the bounds);
    - ``anisotropic``: independent fields ``ℓx`` in ``[min_length_x, max_length_x]`` and ``ℓy`` in
      ``[min_length_y, max_length_y]``, κx from ℓx and κy from ℓy;
    - ``equatorial``: ``isotropic``, stretched zonally by the ratio ``r`` of
      :func:`equatorial_enhancement` (``band_amplitude`` = 15 at the equator, Gaussian of width
      ``band_width`` = 6°, negligible beyond ±12°): with ``preserve_mean`` (default, as the study's
      file shows) ``κx = κ·√r``, ``κy = κ/√r`` so ``sqrt(κx κy)`` is unchanged and κx/κy = r;
      otherwise ``κx = κ·r``, ``κy = κ``. Needs a geometry with latitudes;
    - ``study``: ``equatorial`` with the seed study's values measured on its shipped sample:
      open-ocean ℓ between 224 and 271 km (median 246) (``units="km"``, ``smoothing`` 5.5 cells), reduced to
      124.5 km near coasts, ratio 16, width 6°.

    Coastal reduction (``isotropic``, ``anisotropic``, ``equatorial``, ``study``): with
    ``coast_length`` set (same units), κ goes linearly from the coast value (ℓ = ``coast_length``)
    at ``coast_ramp[0]`` cells (Manhattan) from land to the random value at ``coast_ramp[1]``
    cells (:func:`coastal_weight`); before the equatorial stretch. Off (``None``) by default.

    On the ``sphere`` family this gives ``diff_y ∝ κ cos φ`` and ``diff_x ∝ κ / cos φ`` as in the study.
    The same ``(geometry, mask, generator, params, seed, steps)`` gives bit-identical output.
    Metadata (``generator``, ``generator_params`` as JSON, ``seed``, ``steps``) go into ``grid.attrs``.
    """
    import json

    from .families import grid_from_kappa
    from .operator import check_steps

    steps = check_steps(steps)
    p = generator_params(generator, params)
    shape = tuple(geometry.shape)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape} but the geometry has shape {shape}")
    px, py = bool(geometry.periodic_x), bool(getattr(geometry, "periodic_y", False))
    seeds = np.random.SeedSequence(seed).spawn(2)
    dx, dy = geometry.dx(), geometry.dy()
    if generator == "constant":
        if p["length"] <= 0:
            raise ValueError(f"length must be > 0, got {p['length']}")
        kx = ky = _kappa_dt(np.full(shape, float(p["length"])), np.sqrt(dx * dy), p["units"], steps)
    elif generator in ("isotropic", "equatorial", "study"):
        length = length_scale_field(shape, np.random.default_rng(seeds[0]), p["min_length"], p["max_length"],
                                    p["smoothing"], px, py)
        kx = ky = _kappa_dt(length, np.sqrt(dx * dy), p["units"], steps)
        if p["coast_length"] is not None:
            weight = coastal_weight(mask, p["coast_ramp"], px, py)
            k_coast = _kappa_dt(np.full(shape, float(p["coast_length"])), np.sqrt(dx * dy), p["units"], steps)
            kx = ky = k_coast + (kx - k_coast) * weight
        if generator != "isotropic":
            lat = geometry.lat2d() if hasattr(geometry, "lat2d") else None
            if lat is None:
                raise ValueError(f"the {generator} generator needs a geometry with latitudes")
            ratio = equatorial_enhancement(lat, p["band_width"], p["band_amplitude"])
            if p["preserve_mean"]:
                kx, ky = kx * np.sqrt(ratio), ky / np.sqrt(ratio)
            else:
                kx = kx * ratio
    else:  # anisotropic
        lx = length_scale_field(shape, np.random.default_rng(seeds[0]), p["min_length_x"], p["max_length_x"],
                                p["smoothing"], px, py)
        ly = length_scale_field(shape, np.random.default_rng(seeds[1]), p["min_length_y"], p["max_length_y"],
                                p["smoothing"], px, py)
        kx = _kappa_dt(lx, dx, p["units"], steps)
        ky = _kappa_dt(ly, dy, p["units"], steps)
        if p["coast_length"] is not None:
            weight = coastal_weight(mask, p["coast_ramp"], px, py)
            coast = np.full(shape, float(p["coast_length"]))
            kx_c, ky_c = _kappa_dt(coast, dx, p["units"], steps), _kappa_dt(coast, dy, p["units"], steps)
            kx, ky = kx_c + (kx - kx_c) * weight, ky_c + (ky - ky_c) * weight
    attrs = {"generator": generator, "generator_params": json.dumps(p, sort_keys=True),
             "seed": -1 if seed is None else int(seed), "steps": steps}
    return grid_from_kappa(geometry, mask, kx, ky, attrs=attrs)
