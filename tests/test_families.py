from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from diffnorm.families import (
    EARTH_RADIUS,
    build_family,
    coast_geometry,
    nemo_geometry,
    read_dlnorm,
    sphere_geometry,
    write_dlnorm,
)
from diffnorm.generators import generate_grid
from diffnorm.grid import Grid, GridError, read_nemo_grid
from diffnorm.normalization import exact_normalization
from tests.conftest import dense_gamma, make_grid

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "dlnorm_crop.nc"
SEED_FILE = Path("/work/shared/data/seed-toy/sphere_polecontinent108.nc")
MARGIN = 20  # columns near the crop's cut edges are not compared (see tests/data/make_dlnorm_fixture.py)


# -- dlnorm ------------------------------------------------------------------------------
def test_dlnorm_fixture_labels_reproduced_by_exact():
    """The file's own labels against our exact γ on the imported grid (interior of the crop)."""
    grid, gamma, steps = read_dlnorm(FIXTURE)
    assert steps == 10 and grid.shape == (144, 70)
    assert not grid.periodic_x and not grid.periodic_y  # the crop's cut faces were zeroed
    assert grid.lat[0, 0] == pytest.approx(-71.5) and grid.lon[0, 0] == pytest.approx(20.5)
    ours = exact_normalization(grid, steps)
    assert np.array_equal(np.isnan(ours), np.isnan(gamma))
    rel = np.abs(ours / gamma - 1)[:, MARGIN:-MARGIN]
    rel = rel[np.isfinite(rel)]
    assert rel.size > 2500
    # measured: median 1.0e-4, max 2.1e-3 (the labels' smooth solver error, largest at high latitudes;
    # on the full 180 x 360 file: median 1.1e-4, 99 % 1.9e-3, max 5.0e-3)
    assert np.median(rel) < 2e-4
    assert np.quantile(rel, 0.9) < 1e-3
    assert rel.max() < 3e-3


def _write_dlnorm(path, ny=4, nx=5, periodic_x=True, drop=None, bad_shape=False, seed=0):
    """A tiny seed-code file built by hand from a known grid (labels = dense exact γ)."""
    grid = make_grid(ny, nx, periodic_x, False, seed=seed, land=0.0)
    gamma = dense_gamma(grid, 10)
    south = np.where(np.roll(grid.active_y, 1, axis=0), np.roll(grid.diff_y, 1, axis=0), 0.0)
    west = np.where(np.roll(grid.active_x, 1, axis=1), np.roll(grid.diff_x, 1, axis=1), 0.0)
    dims = ("lat", "lon")
    ds = xr.Dataset({"norm_coeffs": (dims, np.nan_to_num(gamma)), "alpha_i_minus": (dims, south),
                     "alpha_j_minus": (dims, west), "w": (dims, grid.area)},
                    coords={"lat": np.arange(ny) + 0.5, "lon": np.arange(nx) + 0.5})
    if drop:
        ds = ds.drop_vars(drop)
    if bad_shape:
        ds["w"] = (("lat", "lon2"), np.ones((ny, nx + 1)))
    ds.to_netcdf(path)
    return grid, gamma


@pytest.mark.parametrize("periodic_x", [False, True])
def test_dlnorm_mapping_by_hand(tmp_path, periodic_x):
    grid, gamma = _write_dlnorm(tmp_path / "s.nc", 6, 7, periodic_x)
    imported, labels, steps = read_dlnorm(tmp_path / "s.nc")
    assert imported.periodic_x == periodic_x and not imported.periodic_y
    np.testing.assert_array_equal(imported.mask, grid.mask)
    np.testing.assert_array_equal(imported.diff_x[imported.active_x], grid.diff_x[grid.active_x])
    np.testing.assert_array_equal(imported.diff_y[imported.active_y], grid.diff_y[grid.active_y])
    np.testing.assert_allclose(exact_normalization(imported, steps), labels, rtol=1e-10)
    np.testing.assert_array_equal(np.isnan(labels), ~grid.mask)


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (True, True)])
def test_dlnorm_write_read_round_trip(tmp_path, periodic):
    grid = make_grid(6, 7, *periodic, seed=2)
    grid.mask[0, 3:5] = True  # ocean across the southern wrap, so periodic_y shows in the faces
    grid = Grid(grid.mask, grid.area, grid.diff_x, grid.diff_y, *periodic)
    gamma = dense_gamma(grid, 10)
    write_dlnorm(grid, gamma, tmp_path / "out.nc")
    back, labels, steps = read_dlnorm(tmp_path / "out.nc")
    # periodicity is read from the wrap faces: a wrap without any ocean-ocean face is invisible (and irrelevant)
    expected = (periodic[0] and grid.active_x[:, -1].any(), periodic[1] and grid.active_y[-1].any())
    assert (back.periodic_x, back.periodic_y) == expected and steps == 10
    np.testing.assert_array_equal(back.mask, grid.mask)
    np.testing.assert_array_equal(labels, gamma)
    np.testing.assert_array_equal(back.diff_x[back.active_x], grid.diff_x[grid.active_x])
    np.testing.assert_array_equal(back.diff_y[back.active_y], grid.diff_y[grid.active_y])
    with pytest.raises(GridError, match="gamma"):
        write_dlnorm(grid, gamma[1:], tmp_path / "bad.nc")


def test_dlnorm_bad_input(tmp_path):
    _write_dlnorm(tmp_path / "a.nc", drop=["alpha_i_minus"])
    with pytest.raises(GridError, match="alpha_i_minus"):
        read_dlnorm(tmp_path / "a.nc")
    _write_dlnorm(tmp_path / "b.nc", bad_shape=True)
    with pytest.raises(GridError, match="shape"):
        read_dlnorm(tmp_path / "b.nc")
    with pytest.raises(FileNotFoundError):
        read_dlnorm(tmp_path / "missing.nc")
    _write_dlnorm(tmp_path / "d.nc")
    with xr.open_dataset(tmp_path / "d.nc") as ds:
        ds = ds.load()
    ds["alpha_j_minus"][3, 4] = -1.0  # a negative diffusivity on an ocean-ocean face
    ds.to_netcdf(tmp_path / "e.nc")
    with pytest.raises(GridError, match="alpha_j_minus"):
        read_dlnorm(tmp_path / "e.nc")
    (tmp_path / "c.nc").write_text("not netcdf")
    with pytest.raises(GridError, match="not a valid NetCDF"):
        read_dlnorm(tmp_path / "c.nc")


@pytest.mark.skipif(not SEED_FILE.exists(), reason="the seed study's sample is not available")
def test_dlnorm_full_seed_file_and_fixture_is_a_faithful_crop():
    grid, gamma, steps = read_dlnorm(SEED_FILE)
    assert grid.shape == (180, 360) and grid.periodic_x and not grid.periodic_y
    assert grid.n_ocean == 37526
    # the study's area formula W = R² Δλ Δφ cos φ, and ocean only between ±70°
    geo, ocean = sphere_geometry(1.0, 70.0)
    np.testing.assert_allclose(grid.area, geo.area(), rtol=1e-13)
    assert not grid.mask[np.abs(geo.lat) > 70].any()
    assert (ocean == grid.mask).mean() > 0.97  # same coastlines up to the land-mask sampling
    crop, crop_gamma, _ = read_dlnorm(FIXTURE)
    np.testing.assert_allclose(crop_gamma, gamma[18:162, 20:90], rtol=1e-7)
    np.testing.assert_allclose(crop.area, grid.area[18:162, 20:90], rtol=1e-7)


# -- sphere / coast / nemo ----------------------------------------------------------------
def test_sphere_geometry():
    geo, ocean = sphere_geometry(res=2.0, polar_limit=60.0)
    assert geo.shape == (90, 180) and geo.periodic_x and not geo.periodic_y
    assert not ocean[np.abs(geo.lat) > 60].any() and ocean.mean() > 0.4
    d = np.deg2rad(2.0)
    np.testing.assert_allclose(geo.area()[:, 0], EARTH_RADIUS**2 * d * d * np.cos(np.deg2rad(geo.lat)))
    assert geo.lat[0] == -89.0 and geo.lon[0] == 1.0
    with pytest.raises(ValueError, match="polar_limit"):
        sphere_geometry(polar_limit=0)


def test_coast_and_dispatcher():
    geo, ocean = build_family("coast", lat_range=(30, 46), lon_range=(-6, 36), res=1.0)  # Mediterranean
    geo2, ocean2 = coast_geometry((30, 46), (-6, 36), 1.0)
    np.testing.assert_array_equal(ocean, ocean2)
    assert not geo.periodic_x and 0.1 < ocean.mean() < 0.9
    with pytest.raises(ValueError, match="unknown grid family"):
        build_family("torus")
    with pytest.raises(ValueError, match="lat_range"):
        build_family("coast", res=1.0)
    grid, gamma, steps = build_family("dlnorm", path=FIXTURE)
    assert steps == 10 and gamma.shape == grid.shape


def _nemo_file(path, ny=6, nx=8, with_faces=True):
    rng = np.random.default_rng(0)
    e1t, e2t = rng.uniform(8e3, 12e3, (ny, nx)), rng.uniform(8e3, 12e3, (ny, nx))
    tmask = np.ones((1, ny, nx), np.int8)
    tmask[0, 0] = 0
    tmask[0, 3, 4] = 0
    d = ("t", "y", "x")
    fields = {"tmask": (("t", "z", "y", "x"), tmask[None]), "e1t": (d, e1t[None]), "e2t": (d, e2t[None]),
              "gphit": (d, np.broadcast_to(np.linspace(-5, 5, ny)[:, None], (ny, nx))[None])}
    if with_faces:
        for name in ("e1u", "e2u", "e1v", "e2v"):
            fields[name] = (d, rng.uniform(8e3, 12e3, (1, ny, nx)))
    xr.Dataset(fields).to_netcdf(path)


@pytest.mark.parametrize("with_faces", [True, False])
def test_nemo_geometry_matches_read_nemo_grid(tmp_path, with_faces):
    _nemo_file(tmp_path / "mesh.nc", with_faces=with_faces)
    geo, mask = build_family("nemo", mesh_path=tmp_path / "mesh.nc", periodic_x=True)
    length = 2.0  # cells of size sqrt(e1t e2t)
    kappa_dt = length**2 * geo.dx() * geo.dy() / (2 * 10)
    ref = read_nemo_grid(tmp_path / "mesh.nc", kappa_dt, periodic_x=True)
    ours = generate_grid(geo, mask, "constant", {"length": length}, seed=0, steps=10)
    np.testing.assert_array_equal(ours.mask, ref.mask)
    np.testing.assert_allclose(ours.area, ref.area, rtol=1e-14)
    np.testing.assert_allclose(ours.diff_x[ours.active_x], ref.diff_x[ref.active_x], rtol=1e-13)
    np.testing.assert_allclose(ours.diff_y[ours.active_y], ref.diff_y[ref.active_y], rtol=1e-13)
    (tmp_path / "bad.nc").unlink(missing_ok=True)
    xr.Dataset({"tmask": (("y", "x"), np.ones((2, 2)))}).to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(GridError, match="e1t"):
        nemo_geometry(tmp_path / "bad.nc")
