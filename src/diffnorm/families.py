"""Grid families: geometry (cell sizes, areas, face factors) and ocean mask.

Families (see the README, "Training data"):

- ``sphere``: the seed study's toy model, a global regular lat-lon grid with real coastlines and
  polar continents, areas ``W = R² Δλ Δφ cos φ`` (:func:`sphere_geometry`);
- ``coast``: any lat-lon box with real coastlines from ``global-land-mask`` (:func:`coast_geometry`);
- ``nemo``: a NEMO mesh/domain file (:func:`nemo_geometry`);
- ``dlnorm``: the seed code's raw samples, imported with their labels (:func:`read_dlnorm`).

Every geometry provides ``shape``, ``periodic_x``, ``periodic_y``, ``area()``, ``dx()``, ``dy()``
(cell sizes at centres, metres), ``face_factors()`` -> ``(fx, fy)`` with
``diff_x = κ_face·Δt·fx`` and ``diff_y = κ_face·Δt·fy`` (SPEC §1), and ``lat2d()``/``lon2d()``.
Diffusivities come from :mod:`diffnorm.generators`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .grid import Grid, GridError, open_dataset_checked

EARTH_RADIUS = 6_378_136.6  # m


@dataclass
class LatLonGeometry:
    """Cell-centre coordinates and metrics of a regular lat-lon box (metres)."""

    lat: np.ndarray  # (ny,) cell centres, degrees
    lon: np.ndarray  # (nx,)
    res: float  # degrees
    periodic_x: bool
    periodic_y = False  # a lat-lon box never wraps in latitude

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    def lat2d(self) -> np.ndarray:
        return np.broadcast_to(self.lat[:, None], self.shape).copy()

    def lon2d(self) -> np.ndarray:
        return np.broadcast_to(self.lon[None, :], self.shape).copy()

    def face_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(dy/dx_east, dx_north/dy)``: diff = κ_face·Δt·factor (SPEC §1)."""
        dx, dy = self.dx(), self.dy()
        dx_east = 0.5 * (dx + np.roll(dx, -1, axis=1))
        return dy / dx_east, self.dx_north_face() / dy

    def dx(self) -> np.ndarray:
        """Zonal cell width at cell centres, (ny, nx)."""
        d = EARTH_RADIUS * np.deg2rad(self.res) * np.cos(np.deg2rad(self.lat))
        return np.broadcast_to(d[:, None], self.shape).copy()

    def dy(self) -> np.ndarray:
        return np.full(self.shape, EARTH_RADIUS * np.deg2rad(self.res))

    def dx_north_face(self) -> np.ndarray:
        """Zonal width of each cell's north face (at lat + res/2)."""
        d = EARTH_RADIUS * np.deg2rad(self.res) * np.cos(np.deg2rad(np.clip(self.lat + self.res / 2, -90, 90)))
        return np.broadcast_to(d[:, None], self.shape).copy()

    def area(self) -> np.ndarray:
        """Exact spherical band area ``R² Δλ (sin φ_n − sin φ_s)``."""
        half = np.deg2rad(self.res) / 2
        phi = np.deg2rad(self.lat)
        a = EARTH_RADIUS**2 * np.deg2rad(self.res) * (np.sin(phi + half) - np.sin(phi - half))
        return np.broadcast_to(a[:, None], self.shape).copy()


def latlon_geometry(lat_range: tuple[float, float], lon_range: tuple[float, float], res: float) -> LatLonGeometry:
    """Cell centres of a box; periodic in x only when it spans 360°."""
    (lat0, lat1), (lon0, lon1) = lat_range, lon_range
    if not (-90 <= lat0 < lat1 <= 90):
        raise ValueError(f"latitude range must satisfy -90 <= A < B <= 90, got {lat_range}")
    if not lon0 < lon1 or lon1 - lon0 > 360:
        raise ValueError(f"longitude range must satisfy C < D <= C + 360, got {lon_range}")
    if res <= 0:
        raise ValueError(f"resolution must be > 0, got {res}")
    ny = int(round((lat1 - lat0) / res))
    nx = int(round((lon1 - lon0) / res))
    if ny < 1 or nx < 1:
        raise ValueError("the box is smaller than one cell")
    lat = lat0 + res * (np.arange(ny) + 0.5)
    lon = lon0 + res * (np.arange(nx) + 0.5)
    periodic = bool(np.isclose(lon1 - lon0, 360.0))
    return LatLonGeometry(lat, lon, res, periodic)


def land_mask(lat: np.ndarray, lon: np.ndarray, res: float, subsamples: int = 4) -> np.ndarray:
    """True where most of a cell is land, from the 1 km ``global-land-mask``."""
    from global_land_mask import globe

    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    sub_lat = np.clip((lat[:, None] + res * offsets[None, :]).ravel(), -89.999, 89.999)
    sub_lon = (lon[:, None] + res * offsets[None, :]).ravel()
    sub_lon = (sub_lon + 180.0) % 360.0 - 180.0
    la, lo = np.meshgrid(sub_lat, sub_lon, indexing="ij")
    land = globe.is_land(la, lo)
    ny, nx = lat.size, lon.size
    frac = land.reshape(ny, subsamples, nx, subsamples).mean(axis=(1, 3))
    return frac > 0.5


def coast_geometry(lat_range, lon_range, res: float) -> tuple[LatLonGeometry, np.ndarray]:
    """Geometry and ocean mask (True = ocean) of a lat-lon box with real coastlines."""
    geo = latlon_geometry(lat_range, lon_range, res)
    ocean = ~land_mask(geo.lat, geo.lon, res)
    if not ocean.any():
        raise ValueError(f"the box lat {lat_range} lon {lon_range} holds no ocean cell")
    return geo, ocean


def grid_from_kappa(geo: LatLonGeometry, mask: np.ndarray, kappa_dt: np.ndarray,
                    kappa_dt_y: np.ndarray | None = None, attrs: dict | None = None) -> Grid:
    """Scaled face diffusivities from κΔt at cell centres (SPEC §1).

    ``diff_x = κ_face·Δt·dy/dx`` on east faces, ``diff_y = κ_face·Δt·dx_face/dy`` on north
    faces; κ is averaged onto faces. A separate ``kappa_dt_y`` gives anisotropic diffusion.
    """
    kx = kappa_dt
    ky = kappa_dt if kappa_dt_y is None else kappa_dt_y
    kx = np.broadcast_to(np.asarray(kx, dtype=np.float64), geo.shape)
    ky = np.broadcast_to(np.asarray(ky, dtype=np.float64), geo.shape)
    kx_face = 0.5 * (kx + np.roll(kx, -1, axis=1))
    ky_face = 0.5 * (ky + np.roll(ky, -1, axis=0))
    fx, fy = geo.face_factors()
    with np.errstate(invalid="ignore"):
        diff_x = kx_face * fx
        diff_y = ky_face * fy
    return Grid(mask, geo.area(), diff_x, diff_y, geo.periodic_x, geo.periodic_y, geo.lat2d(), geo.lon2d(),
                dict(attrs or {}))


# -- sphere: the seed study's toy model ------------------------------------------------
class SphereGeometry(LatLonGeometry):
    """Global regular lat-lon grid of the seed study: areas ``W = R² Δλ Δφ cos φ`` at cell centres.

    (The study's formula, not the exact band area of :meth:`LatLonGeometry.area`; they differ by
    a factor ``sin(Δφ/2)/(Δφ/2)``, 1 − 1.3e-5 at 1°.) Face factors are those of the lat-lon box:
    ``diff_x ∝ κ/cos φ`` and ``diff_y ∝ κ cos φ_face`` as in the study's samples.
    """

    def area(self) -> np.ndarray:
        d = np.deg2rad(self.res)
        a = EARTH_RADIUS**2 * d * d * np.cos(np.deg2rad(self.lat))
        return np.broadcast_to(a[:, None], self.shape).copy()


def sphere_geometry(res: float = 1.0, polar_limit: float = 70.0,
                    subsamples: int = 4) -> tuple[SphereGeometry, np.ndarray]:
    """The seed study's toy model: global ``res``° grid (180 × 360 at 1°), periodic in x, real
    coastlines, land ("polar continents") on every cell whose centre is poleward of ±``polar_limit``.

    Returns ``(geometry, ocean mask)``; rows run south→north from −90 + res/2, columns east from
    res/2 (longitude 0..360, as the seed code's files).
    """
    if not 0 < polar_limit <= 90:
        raise ValueError(f"polar_limit must be in (0, 90], got {polar_limit}")
    base = latlon_geometry((-90.0, 90.0), (0.0, 360.0), res)
    geo = SphereGeometry(base.lat, base.lon, base.res, True)
    ocean = ~land_mask(geo.lat, geo.lon, res, subsamples=subsamples)
    ocean &= (np.abs(geo.lat) < polar_limit)[:, None]
    if not ocean.any():
        raise ValueError("the sphere holds no ocean cell (polar_limit too small?)")
    return geo, ocean


# -- nemo ------------------------------------------------------------------------------
@dataclass
class CurvilinearGeometry:
    """Metrics of a curvilinear (NEMO) mesh: scale factors at T, U and V points (metres)."""

    e1t: np.ndarray
    e2t: np.ndarray
    e1u: np.ndarray
    e2u: np.ndarray
    e1v: np.ndarray
    e2v: np.ndarray
    lat: np.ndarray | None = None  # (ny, nx) or None
    lon: np.ndarray | None = None
    periodic_x: bool = False
    periodic_y: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return self.e1t.shape

    def dx(self) -> np.ndarray:
        return self.e1t.copy()

    def dy(self) -> np.ndarray:
        return self.e2t.copy()

    def area(self) -> np.ndarray:
        return self.e1t * self.e2t

    def face_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(e2u/e1u, e1v/e2v)`` as :func:`diffnorm.grid.read_nemo_grid`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.e2u / self.e1u, self.e1v / self.e2v

    def lat2d(self) -> np.ndarray | None:
        return None if self.lat is None else self.lat.copy()

    def lon2d(self) -> np.ndarray | None:
        return None if self.lon is None else self.lon.copy()


def nemo_geometry(mesh_path: str | os.PathLike, periodic_x: bool = False,
                  periodic_y: bool = False) -> tuple[CurvilinearGeometry, np.ndarray]:
    """Geometry and ocean mask of a NEMO mesh/domain file (``tmask``, ``e1t``, ``e2t``; face metrics
    ``e1u``, ``e2u``, ``e1v``, ``e2v`` averaged from T points when absent), surface level."""
    from .grid import read_nemo_metrics

    mask, metrics, lat, lon = read_nemo_metrics(mesh_path)
    geo = CurvilinearGeometry(*metrics, lat, lon, periodic_x, periodic_y)
    return geo, mask


def nemo_grid(mesh_path: str | os.PathLike, diffusivity, **kwargs) -> Grid:
    """The ``nemo`` family with a given κ: :func:`diffnorm.grid.read_nemo_grid`."""
    from .grid import read_nemo_grid

    return read_nemo_grid(mesh_path, diffusivity, **kwargs)


# -- dlnorm: the seed code's raw samples -------------------------------------------------
DLNORM_VARIABLES = ("norm_coeffs", "alpha_i_minus", "alpha_j_minus", "w")
DLNORM_STEPS = 10


def read_dlnorm(path: str | os.PathLike, periodic_x: bool | None = None,
                periodic_y: bool | None = None) -> tuple[Grid, np.ndarray, int]:
    """Import a seed-code (DL-normalization) raw sample: ``(grid, gamma, steps=10)``.

    The file holds ``norm_coeffs`` (γ, 0 on land), ``alpha_i_minus`` (scaled diffusivity on the
    SOUTH face of each cell), ``alpha_j_minus`` (on the WEST face) and ``w`` (area), on dims
    ``(lat, lon)``. Row 0 is the southernmost row and column 0 the westernmost (checked on the
    shipped sample against the land mask). Mapping to SPEC §1:

    - ``mask = norm_coeffs > 0`` (finite);
    - ``diff_y[j, i] = alpha_i_minus[j+1, i]`` (the south face of the cell above is my north face);
    - ``diff_x[j, i] = alpha_j_minus[j, i+1]`` (the west face of the cell to the east);
    - ``area = w``; ``gamma = norm_coeffs`` with NaN on land.

    Periodicity, when not given, is read from the data: ``periodic_x`` when some west face of
    column 0 carries a non-zero diffusivity (it couples to the last column), likewise ``periodic_y``
    from the south faces of row 0. A ``lat`` coordinate given as 0..180 (the seed code's
    colatitude-from-south convention) is shifted to −90..90.
    """
    with open_dataset_checked(path) as ds:
        missing = [v for v in DLNORM_VARIABLES if v not in ds.variables]
        if missing:
            raise GridError(f"dlnorm file {path} is missing variable(s): {', '.join(missing)}")
        arrays = {}
        for v in DLNORM_VARIABLES:
            da = ds[v]
            if da.ndim != 2:
                raise GridError(f"{v} in {path} must be 2-D (lat, lon), got dims {da.dims}")
            if da.dims == ("lon", "lat"):
                da = da.transpose("lat", "lon")
            arrays[v] = np.asarray(da.values, dtype=np.float64)
        shape = arrays["norm_coeffs"].shape
        for v, a in arrays.items():
            if a.shape != shape:
                raise GridError(f"{v} in {path} has shape {a.shape} but norm_coeffs has shape {shape}")
        lat = np.asarray(ds["lat"].values, dtype=np.float64) if "lat" in ds.variables else None
        lon = np.asarray(ds["lon"].values, dtype=np.float64) if "lon" in ds.variables else None
    gamma = arrays["norm_coeffs"]
    mask = np.isfinite(gamma) & (gamma > 0)
    south, west = arrays["alpha_i_minus"], arrays["alpha_j_minus"]
    if periodic_x is None:
        periodic_x = bool(np.any(west[:, 0][mask[:, 0] & mask[:, -1]] > 0))
    if periodic_y is None:
        periodic_y = bool(np.any(south[0, :][mask[0, :] & mask[-1, :]] > 0))
    diff_y = np.roll(south, -1, axis=0)
    diff_x = np.roll(west, -1, axis=1)
    lat2d = lon2d = None
    if lat is not None and lon is not None and lat.ndim == 1 and lon.ndim == 1 \
            and lat.size == shape[0] and lon.size == shape[1]:
        if lat.min() >= 0 and lat.max() > 90:
            lat = lat - 90.0
        lat2d, lon2d = np.meshgrid(lat, lon, indexing="ij")
    try:
        grid = Grid(mask, arrays["w"], diff_x, diff_y, periodic_x, periodic_y, lat2d, lon2d,
                    {"family": "dlnorm", "source": f"dlnorm:{Path(path).name}"})
    except GridError as exc:
        raise GridError(f"dlnorm file {path}: {exc} (diff_x comes from alpha_j_minus, diff_y from alpha_i_minus, "
                        "area from w, mask from norm_coeffs > 0)") from exc
    return grid, np.where(mask, gamma, np.nan), DLNORM_STEPS


def write_dlnorm(grid: Grid, gamma: np.ndarray, path: str | os.PathLike) -> None:
    """Write a grid and its γ in the seed code's raw format (the inverse of :func:`read_dlnorm`).

    Faces that are not active (coasts, and the wrap faces of non-periodic axes) are written as 0,
    γ as 0 on land, so that :func:`read_dlnorm` finds the same mask and periodicity.
    """
    import xarray as xr

    from .grid import write_netcdf_atomic

    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.shape != grid.shape:
        raise GridError(f"gamma has shape {gamma.shape} but the grid has shape {grid.shape}")
    if not np.all(np.isfinite(gamma[grid.mask]) & (gamma[grid.mask] > 0)):
        raise GridError("gamma must be finite and > 0 on every ocean cell")
    south = np.roll(np.where(grid.active_y, grid.diff_y, 0.0), 1, axis=0)
    west = np.roll(np.where(grid.active_x, grid.diff_x, 0.0), 1, axis=1)
    dims = ("lat", "lon")
    ny, nx = grid.shape
    lat = grid.lat[:, 0] if grid.lat is not None else np.arange(ny) + 0.5
    lon = grid.lon[0, :] if grid.lon is not None else np.arange(nx) + 0.5
    ds = xr.Dataset({"norm_coeffs": (dims, np.where(grid.mask, gamma, 0.0)), "alpha_i_minus": (dims, south),
                     "alpha_j_minus": (dims, west), "w": (dims, np.where(np.isfinite(grid.area), grid.area, 0.0))},
                    coords={"lat": lat, "lon": lon})
    write_netcdf_atomic(ds, path)


# -- dispatcher ----------------------------------------------------------------------------
FAMILIES = ("sphere", "coast", "nemo", "dlnorm")


def build_family(name: str, **params):
    """Build a grid family by name.

    - ``"sphere"``: ``res=1.0, polar_limit=70.0`` -> ``(SphereGeometry, ocean mask)``;
    - ``"coast"``: ``lat_range=(A, B), lon_range=(C, D), res`` -> ``(LatLonGeometry, ocean mask)``;
    - ``"nemo"``: ``mesh_path, periodic_x=False, periodic_y=False`` -> ``(CurvilinearGeometry, ocean mask)``;
    - ``"dlnorm"``: ``path`` -> ``(Grid, gamma, steps)`` (an importer: the file brings its own
      diffusivities and labels, see :func:`read_dlnorm`).

    Geometries plus masks go to :func:`diffnorm.generators.generate_grid` for random diffusivities.
    """
    if name == "sphere":
        return sphere_geometry(**params)
    if name == "coast":
        missing = [k for k in ("lat_range", "lon_range", "res") if k not in params]
        if missing:
            raise ValueError(f"coast family needs parameter(s): {', '.join(missing)}")
        return coast_geometry(tuple(params["lat_range"]), tuple(params["lon_range"]), float(params["res"]))
    if name == "nemo":
        return nemo_geometry(**params)
    if name == "dlnorm":
        return read_dlnorm(**params)
    raise ValueError(f"unknown grid family {name!r}; choose one of {', '.join(FAMILIES)}")
