import json

import numpy as np
import pytest

from diffnorm.families import CurvilinearGeometry, latlon_geometry, sphere_geometry
from diffnorm.generators import (
    GENERATORS,
    coastal_weight,
    equatorial_enhancement,
    generate_grid,
    generator_params,
    length_scale_field,
)
from diffnorm.grid import Grid

STEPS = 10


def _box():
    geo = latlon_geometry((-30.0, 30.0), (0.0, 40.0), 2.0)  # 30 x 20, not periodic
    mask = np.ones(geo.shape, bool)
    mask[10:13, 5:9] = False
    return geo, mask


def _plane(ny=12, nx=16, size=1000.0, periodic_x=False):
    e = np.full((ny, nx), size)
    return CurvilinearGeometry(e, e, e, e, e, e, periodic_x=periodic_x), np.ones((ny, nx), bool)


@pytest.mark.parametrize("generator", [g for g in GENERATORS])
def test_reproducible_from_seed(generator):
    geo, mask = _box()
    a = generate_grid(geo, mask, generator, {}, seed=7, steps=STEPS)
    b = generate_grid(geo, mask, generator, {}, seed=7, steps=STEPS)
    c = generate_grid(geo, mask, generator, {}, seed=8, steps=STEPS)
    assert isinstance(a, Grid)
    np.testing.assert_array_equal(a.diff_x, b.diff_x)  # bit for bit
    np.testing.assert_array_equal(a.diff_y, b.diff_y)
    if generator != "constant":
        assert not np.array_equal(a.diff_x, c.diff_x)
    assert a.attrs["generator"] == generator and a.attrs["seed"] == 7 and a.attrs["steps"] == STEPS
    assert json.loads(a.attrs["generator_params"]) == generator_params(generator, {})
    ds = a.to_dataset()  # metadata survive the grid file
    assert ds.attrs["generator"] == generator


def test_constant_length_by_hand():
    geo, mask = _plane(size=2000.0)
    grid = generate_grid(geo, mask, "constant", {"length": 3.0}, steps=STEPS)
    # square 2 km cells: κΔt = (3·2000)²/(2M) and diff = κΔt·(dy/dx) = κΔt
    np.testing.assert_allclose(grid.diff_x[grid.active_x], 6000.0**2 / 20)
    km = generate_grid(geo, mask, "constant", {"length": 6.0, "units": "km"}, steps=STEPS)
    np.testing.assert_allclose(km.diff_y[km.active_y], grid.diff_y[grid.active_y])


def test_length_ranges_isotropic_and_anisotropic():
    geo, mask = _plane(40, 50, size=1.0, periodic_x=True)
    iso = generate_grid(geo, mask, "isotropic", {"min_length": 1.5, "max_length": 4.0}, seed=1, steps=STEPS)
    # unit cells: diff = ℓ²/(2M) averaged on faces, so sqrt(2M·diff) stays within [min, max]
    ell = np.sqrt(2 * STEPS * iso.diff_x[iso.active_x])
    assert ell.min() >= 1.5 - 1e-12 and ell.max() <= 4.0 + 1e-12 and ell.max() - ell.min() > 1.0
    an = generate_grid(geo, mask, "anisotropic", {"min_length_x": 4.0, "max_length_x": 6.0,
                                                  "min_length_y": 1.0, "max_length_y": 2.0}, seed=1, steps=STEPS)
    lx = np.sqrt(2 * STEPS * an.diff_x[an.active_x])
    ly = np.sqrt(2 * STEPS * an.diff_y[an.active_y])
    assert 4.0 - 1e-12 <= lx.min() and lx.max() <= 6.0 + 1e-12
    assert 1.0 - 1e-12 <= ly.min() and ly.max() <= 2.0 + 1e-12
    f = length_scale_field((200, 200), 0, 1.5, 4.0)
    assert 1.5 < f.min() < 1.8 and 3.7 < f.max() < 4.0  # spans nearly the whole range
    assert np.median(f) == pytest.approx(np.sqrt(1.5 * 4.0), rel=0.1)  # log-centred


def test_equatorial_band_ratio():
    geo, mask = _box()
    ell = 2.0
    grid = generate_grid(geo, mask, "equatorial", {"min_length": ell, "max_length": ell}, steps=STEPS)
    fx, fy = geo.face_factors()
    kx = grid.diff_x / fx  # κΔt on east faces (same row: no averaging across latitudes)
    base = ell**2 * geo.dx() * geo.dy() / (2 * STEPS)
    r = equatorial_enhancement(geo.lat)[:, None]
    np.testing.assert_allclose(kx[:, :-1], (base * np.sqrt(r))[:, :-1], rtol=1e-12)
    assert equatorial_enhancement(np.array([0.0]))[0] == 15.0
    assert equatorial_enhancement(np.array([12.0]))[0] < 1.3
    no_mean = generate_grid(geo, mask, "equatorial", {"min_length": ell, "max_length": ell,
                                                      "preserve_mean": False}, steps=STEPS)
    np.testing.assert_allclose((no_mean.diff_x / fx)[:, :-1], (base * r)[:, :-1], rtol=1e-12)
    np.testing.assert_allclose(no_mean.diff_y, generate_grid(geo, mask, "constant", {"length": ell},
                                                             steps=STEPS).diff_y, rtol=1e-12)


def test_study_generator_on_the_sphere():
    geo, mask = sphere_geometry(res=3.0)
    grid = generate_grid(geo, mask, "study", {"min_length": 200.0, "max_length": 200.0, "coast_length": None},
                         steps=STEPS)
    kappa = 200e3**2 / (2 * STEPS)
    lat = geo.lat[:, None]
    far = np.abs(lat[:, 0]) > 30
    # diff_x ∝ κ / cos φ and diff_y ∝ κ cos φ (north-face latitude), as the study's samples
    np.testing.assert_allclose((grid.diff_x * np.cos(np.deg2rad(lat)))[far], kappa, rtol=1e-9)
    np.testing.assert_allclose((grid.diff_y / np.cos(np.deg2rad(lat + 1.5)))[far][:, :], kappa, rtol=1e-9)
    assert grid.periodic_x and grid.diff_x[geo.lat.size // 2].max() > 3.5 * kappa


def test_coastal_reduction():
    geo, mask = _plane(20, 24, size=1000.0, periodic_x=True)
    mask[8:11, 10:14] = False  # an island; walls north and south
    params = {"min_length": 4.0, "max_length": 4.0, "coast_length": 1.0, "coast_ramp": [1.0, 4.0]}
    grid = generate_grid(geo, mask, "isotropic", params, steps=STEPS)
    weight = coastal_weight(mask, (1.0, 4.0), periodic_x=True)
    kappa = (1e3**2 + (16e6 - 1e6) * weight) / (2 * STEPS)  # κΔt at cell centres, unit-ratio faces
    np.testing.assert_allclose(grid.diff_x, 0.5 * (kappa + np.roll(kappa, -1, axis=1)), rtol=1e-13)
    assert weight[9, 9] == 0 and weight[9, 5] == 1 and weight[9, 7] == pytest.approx(2 / 3)
    assert weight[0, 0] == 0  # the southern wall is a coast
    study = generator_params("study")
    assert study["coast_length"] == 124.5 and study["units"] == "km"
    an = generate_grid(geo, mask, "anisotropic", {"coast_length": 0.5}, seed=2, steps=STEPS)
    near = np.isclose(weight, 0) & an.active_x & np.roll(np.isclose(weight, 0), -1, axis=1)
    np.testing.assert_allclose(an.diff_x[near], 500.0**2 / (2 * STEPS))
    with pytest.raises(ValueError, match="coast_ramp"):
        generate_grid(geo, mask, "isotropic", {"coast_length": 1.0, "coast_ramp": [3.0, 2.0]})


def test_generator_errors():
    geo, mask = _box()
    with pytest.raises(ValueError, match="unknown diffusivity generator"):
        generate_grid(geo, mask, "fractal")
    with pytest.raises(ValueError, match="unknown parameter"):
        generate_grid(geo, mask, "isotropic", {"max_lenght": 3})
    with pytest.raises(ValueError, match="units"):
        generate_grid(geo, mask, "isotropic", {"units": "miles"})
    with pytest.raises(ValueError, match="mask has shape"):
        generate_grid(geo, mask[1:], "isotropic")
    with pytest.raises(ValueError, match="steps"):
        generate_grid(geo, mask, "isotropic", steps=3)
    with pytest.raises(ValueError, match="min_length"):
        generate_grid(geo, mask, "isotropic", {"min_length": 5.0, "max_length": 2.0})
    plane, pmask = _plane()
    with pytest.raises(ValueError, match="latitudes"):
        generate_grid(plane, pmask, "equatorial")
