"""Grid builders: regular lat-lon boxes with real coastlines (``global-land-mask``).

Geometry only (mask, areas, cell sizes); diffusivities come from :mod:`diffnorm.generators`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Grid

EARTH_RADIUS = 6_378_136.6  # m


@dataclass
class LatLonGeometry:
    """Cell-centre coordinates and metrics of a regular lat-lon box (metres)."""

    lat: np.ndarray  # (ny,) cell centres, degrees
    lon: np.ndarray  # (nx,)
    res: float  # degrees
    periodic_x: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

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
    kx_face = 0.5 * (kx + np.roll(kx, -1, axis=1))
    ky_face = 0.5 * (ky + np.roll(ky, -1, axis=0))
    dx, dy = geo.dx(), geo.dy()
    dx_east = 0.5 * (dx + np.roll(dx, -1, axis=1))
    diff_x = kx_face * dy / dx_east
    diff_y = ky_face * geo.dx_north_face() / dy
    lat2d, lon2d = np.meshgrid(geo.lat, geo.lon, indexing="ij")
    return Grid(mask, geo.area(), diff_x, diff_y, geo.periodic_x, False, lat2d, lon2d, dict(attrs or {}))
