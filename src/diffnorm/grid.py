"""Arakawa C-grid container (SPEC §1) and the grid file format (SPEC §4).

A :class:`Grid` is validated once when it is built, so every later stage (operator,
normalization, data sets) can trust it. Errors name the offending variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

GRID_VARIABLES = ("mask", "area", "diff_x", "diff_y")


class GridError(ValueError):
    """A grid (or grid file) is malformed; the message names the variable."""


def _as_float_field(name: str, value, shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2:
        raise GridError(f"{name} must be a 2-D (ny, nx) array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise GridError(f"{name} has shape {arr.shape} but mask has shape {shape}")
    return arr


@dataclass(eq=False)
class Grid:
    """Ocean grid: mask, cell areas and scaled face diffusivities, shape ``(ny, nx)``.

    ``diff_x[j, i]`` lives on the east face of cell (j, i), ``diff_y[j, i]`` on its north
    face. A face is active only if both of its cells are ocean; values on inactive faces
    (and area on land) are ignored and may be NaN.
    """

    mask: np.ndarray
    area: np.ndarray
    diff_x: np.ndarray
    diff_y: np.ndarray
    periodic_x: bool = False
    periodic_y: bool = False
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise GridError(f"mask must be a 2-D (ny, nx) array, got shape {mask.shape}")
        if mask.size == 0:
            raise GridError("mask is empty")
        if not np.all(np.isfinite(mask.astype(np.float64))):
            raise GridError("mask contains NaN or inf")
        if not np.all(np.isin(mask, (0, 1))):
            raise GridError("mask must contain only 0 (land) and 1 (ocean)")
        self.mask = mask.astype(bool)
        shape = self.mask.shape
        self.area = _as_float_field("area", self.area, shape)
        self.diff_x = _as_float_field("diff_x", self.diff_x, shape)
        self.diff_y = _as_float_field("diff_y", self.diff_y, shape)
        self.periodic_x = bool(self.periodic_x)
        self.periodic_y = bool(self.periodic_y)
        if not self.mask.any():
            raise GridError("mask has no ocean cell")
        ocean_area = self.area[self.mask]
        if not np.all(np.isfinite(ocean_area)):
            raise GridError("area is NaN or inf on an ocean cell")
        if np.any(ocean_area <= 0):
            raise GridError("area must be > 0 on every ocean cell (found area <= 0)")
        for name, active in (("diff_x", self.active_x), ("diff_y", self.active_y)):
            values = getattr(self, name)[active]
            if not np.all(np.isfinite(values)):
                raise GridError(f"{name} is NaN or inf on an active (ocean-ocean) face")
            if np.any(values < 0):
                raise GridError(f"{name} must be >= 0 (found a negative diffusivity)")
        for name in ("lat", "lon"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _as_float_field(name, value, shape))

    # -- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    @property
    def n_ocean(self) -> int:
        return int(self.mask.sum())

    @property
    def active_x(self) -> np.ndarray:
        """Boolean (ny, nx): the east face of (j, i) joins two ocean cells."""
        east = np.roll(self.mask, -1, axis=1)
        active = self.mask & east
        if not self.periodic_x:
            active[:, -1] = False
        return active

    @property
    def active_y(self) -> np.ndarray:
        """Boolean (ny, nx): the north face of (j, i) joins two ocean cells."""
        north = np.roll(self.mask, -1, axis=0)
        active = self.mask & north
        if not self.periodic_y:
            active[-1, :] = False
        return active

    def to_field(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Scatter ocean-cell values (n_ocean, ...) back onto the (ny, nx, ...) grid."""
        values = np.asarray(values)
        out = np.full(self.shape + values.shape[1:], fill, dtype=np.result_type(values, np.float64))
        out[self.mask] = values
        return out

    def with_diffusivity(self, diff_x: np.ndarray, diff_y: np.ndarray) -> Grid:
        """Same geometry, new face diffusivities (how data sets vary the inputs)."""
        return Grid(self.mask, self.area, diff_x, diff_y, self.periodic_x, self.periodic_y,
                    self.lat, self.lon, dict(self.attrs))

    # -- xarray / NetCDF ------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        dims = ("y", "x")
        ds = xr.Dataset(
            {
                "mask": (dims, self.mask.astype(np.int8)),
                "area": (dims, self.area),
                "diff_x": (dims, self.diff_x),
                "diff_y": (dims, self.diff_y),
            }
        )
        if self.lat is not None:
            ds = ds.assign_coords(lat=(dims, self.lat))
        if self.lon is not None:
            ds = ds.assign_coords(lon=(dims, self.lon))
        ds.attrs.update({k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float))})
        ds.attrs["periodic_x"] = int(self.periodic_x)
        ds.attrs["periodic_y"] = int(self.periodic_y)
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Grid:
        missing = [v for v in GRID_VARIABLES if v not in ds.variables]
        if missing:
            raise GridError(f"grid file is missing variable(s): {', '.join(missing)}")
        for v in GRID_VARIABLES:
            if ds[v].dims != ("y", "x"):
                raise GridError(f"{v} must have dimensions ('y', 'x'), got {ds[v].dims}")
        coords = {c: (ds[c].values if c in ds.variables else None) for c in ("lat", "lon")}
        attrs = {k: v for k, v in ds.attrs.items() if k not in ("periodic_x", "periodic_y")}
        return cls(
            mask=ds["mask"].values,
            area=ds["area"].values,
            diff_x=ds["diff_x"].values,
            diff_y=ds["diff_y"].values,
            periodic_x=bool(int(ds.attrs.get("periodic_x", 0))),
            periodic_y=bool(int(ds.attrs.get("periodic_y", 0))),
            attrs=attrs,
            **coords,
        )

    def to_netcdf(self, path: str | os.PathLike) -> None:
        write_netcdf_atomic(self.to_dataset(), path)

    @classmethod
    def from_netcdf(cls, path: str | os.PathLike) -> Grid:
        with open_dataset_checked(path) as ds:
            return cls.from_dataset(ds.load())


def open_dataset_checked(path: str | os.PathLike) -> xr.Dataset:
    """Open a NetCDF file, turning 'missing' and 'corrupt' into errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return xr.open_dataset(path)
    except Exception as exc:  # netCDF4/h5netcdf raise many exception types
        raise GridError(f"cannot read {path}: not a valid NetCDF file ({exc})") from exc


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it over ``path``, so a crash never
    leaves a half-written file (and a failed write leaves no temporary one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write to a temporary name then rename, so a crash never leaves a half-written file."""
    write_atomic(path, ds.to_netcdf)


def read_grid(path: str | os.PathLike) -> Grid:
    """Read a SPEC §4 grid file."""
    return Grid.from_netcdf(path)


def _first_level(da: xr.DataArray) -> np.ndarray:
    """NEMO fields carry (t, z, y, x) or (t, y, x): keep the surface of the first record."""
    arr = da.values
    while arr.ndim > 2:
        arr = arr[0]
    return np.asarray(arr, dtype=np.float64)


def read_nemo_metrics(mesh_path: str | os.PathLike):
    """``(mask, (e1t, e2t, e1u, e2u, e1v, e2v), lat, lon)`` of a NEMO mesh/domain file at the surface; face
    metrics absent from the file are averaged from the T points; lat/lon (``gphit``/``glamt``) may be None."""
    with open_dataset_checked(mesh_path) as ds:
        missing = [v for v in ("tmask", "e1t", "e2t") if v not in ds.variables]
        if missing:
            raise GridError(f"NEMO file {mesh_path} is missing variable(s): {', '.join(missing)}")
        mask = _first_level(ds["tmask"]) > 0.5
        e1t, e2t = _first_level(ds["e1t"]), _first_level(ds["e2t"])
        if e1t.shape != mask.shape or e2t.shape != mask.shape:
            raise GridError(f"NEMO file {mesh_path}: e1t/e2t shape differs from tmask shape {mask.shape}")

        def face(name: str, fallback: np.ndarray, axis: int) -> np.ndarray:
            if name in ds.variables:
                return _first_level(ds[name])
            return 0.5 * (fallback + np.roll(fallback, -1, axis=axis))

        metrics = (e1t, e2t, face("e1u", e1t, 1), face("e2u", e2t, 1), face("e1v", e1t, 0), face("e2v", e2t, 0))
        lat = _first_level(ds["gphit"]) if "gphit" in ds.variables else None
        lon = _first_level(ds["glamt"]) if "glamt" in ds.variables else None
    return mask, metrics, lat, lon


def read_nemo_grid(
    mesh_path: str | os.PathLike,
    diffusivity: float | np.ndarray | str | os.PathLike,
    *,
    diffusivity_variable: str = "kappa",
    dt: float = 1.0,
    periodic_x: bool = False,
    periodic_y: bool = False,
) -> Grid:
    """Build a grid from a NEMO mesh/domain file and a diffusivity κ (m²/s) at T points.

    ``diff_x = κ_u·dt·e2u/e1u`` and ``diff_y = κ_v·dt·e1v/e2v`` (SPEC §1), κ averaged onto
    faces; ``area = e1t·e2t``. When the face metrics ``e2u``/``e1v`` are absent the
    T-point metrics are averaged onto the faces. ``diffusivity`` is a scalar, an array, or
    a NetCDF file holding ``diffusivity_variable``.
    """
    mask, (e1t, e2t, e1u, e2u, e1v, e2v), lat, lon = read_nemo_metrics(mesh_path)
    if isinstance(diffusivity, (str, os.PathLike)):
        with open_dataset_checked(diffusivity) as dds:
            if diffusivity_variable not in dds.variables:
                raise GridError(f"diffusivity file {diffusivity} has no variable '{diffusivity_variable}'")
            kappa = _first_level(dds[diffusivity_variable])
    else:
        kappa = np.broadcast_to(np.asarray(diffusivity, dtype=np.float64), mask.shape)
    if kappa.shape != mask.shape:
        raise GridError(f"diffusivity has shape {kappa.shape} but tmask has shape {mask.shape}")
    kappa_u = 0.5 * (kappa + np.roll(kappa, -1, axis=1))
    kappa_v = 0.5 * (kappa + np.roll(kappa, -1, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        diff_x = kappa_u * dt * e2u / e1u
        diff_y = kappa_v * dt * e1v / e2v
    return Grid(mask, e1t * e2t, diff_x, diff_y, periodic_x, periodic_y, lat, lon,
                {"source": f"nemo:{Path(mesh_path).name}"})
