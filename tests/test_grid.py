import numpy as np
import pytest
import xarray as xr

from diffnorm.grid import Grid, GridError, read_grid, read_nemo_grid


def fields(ny=4, nx=5):
    mask = np.ones((ny, nx), dtype=np.int8)
    mask[0, 0] = 0
    return dict(mask=mask, area=np.ones((ny, nx)), diff_x=np.ones((ny, nx)), diff_y=np.ones((ny, nx)))


def test_active_faces_respect_coasts_and_periodicity():
    f = fields()
    g = Grid(**f)
    assert not g.active_x[0, 0]  # land cell
    assert not g.active_x[:, -1].any()  # wall at the last column
    assert g.active_x[1, 0] and g.active_y[0, 1]
    gp = Grid(**f, periodic_x=True)
    assert gp.active_x[1, -1] and not gp.active_x[0, -1]  # wraps to (0, 0) which is land


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.update(area=np.ones((3, 5))), "area has shape"),
        (lambda f: f["area"].__setitem__((1, 1), np.nan), "area is NaN"),
        (lambda f: f["area"].__setitem__((1, 1), 0.0), "area must be > 0"),
        (lambda f: f["area"].__setitem__((1, 1), -2.0), "area must be > 0"),
        (lambda f: f["diff_x"].__setitem__((1, 1), np.inf), "diff_x is NaN or inf"),
        (lambda f: f["diff_y"].__setitem__((1, 1), -1.0), "diff_y must be >= 0"),
        (lambda f: f.update(mask=np.zeros((4, 5))), "no ocean cell"),
        (lambda f: f["mask"].__setitem__((1, 1), 3), "only 0"),
        (lambda f: f.update(diff_x=np.ones(20)), "diff_x must be a 2-D"),
    ],
)
def test_bad_input_names_the_problem(change, message):
    f = fields()
    change(f)
    with pytest.raises(GridError, match=message):
        Grid(**f)


def test_values_on_land_and_inactive_faces_are_ignored():
    f = fields()
    f["area"][0, 0] = np.nan
    f["diff_x"][0, 0] = -5.0  # face of a land cell
    f["diff_x"][:, -1] = np.nan  # wall faces
    Grid(**f)


def test_netcdf_round_trip(tmp_path):
    f = fields()
    lat = np.linspace(-1, 1, 20).reshape(4, 5)
    g = Grid(**f, periodic_x=True, lat=lat, lon=lat + 3)
    g.to_netcdf(tmp_path / "g.nc")
    h = read_grid(tmp_path / "g.nc")
    for name in ("mask", "area", "diff_x", "diff_y", "lat", "lon"):
        np.testing.assert_array_equal(getattr(g, name), getattr(h, name))
    assert h.periodic_x and not h.periodic_y
    with xr.open_dataset(tmp_path / "g.nc") as ds:
        assert ds["mask"].dtype == np.int8 and ds.attrs["periodic_x"] == 1


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_grid(tmp_path / "absent.nc")
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file at all")
    with pytest.raises(GridError, match="cannot read"):
        read_grid(tmp_path / "junk.nc")
    ds = Grid(**fields()).to_dataset().drop_vars("diff_y")
    ds.to_netcdf(tmp_path / "missing.nc")
    with pytest.raises(GridError, match="missing variable.*diff_y"):
        read_grid(tmp_path / "missing.nc")


def test_nemo_reader(tmp_path):
    ny, nx = 4, 6
    rng = np.random.default_rng(0)
    tmask = np.ones((1, 3, ny, nx))
    tmask[0, 0, 0, :] = 0
    e1t, e2t = rng.uniform(1, 2, (ny, nx)), rng.uniform(1, 2, (ny, nx))
    e1u, e2u, e1v, e2v = (rng.uniform(1, 2, (ny, nx)) for _ in range(4))
    dims4, dims3 = ("t", "z", "y", "x"), ("t", "y", "x")
    ds = xr.Dataset({"tmask": (dims4, tmask)})
    for name, arr in dict(e1t=e1t, e2t=e2t, e1u=e1u, e2u=e2u, e1v=e1v, e2v=e2v).items():
        ds[name] = (dims3, arr[None])
    ds.to_netcdf(tmp_path / "mesh.nc")
    kappa = rng.uniform(100, 200, (ny, nx))
    xr.Dataset({"kappa": (("y", "x"), kappa)}).to_netcdf(tmp_path / "kappa.nc")
    g = read_nemo_grid(tmp_path / "mesh.nc", tmp_path / "kappa.nc", dt=10.0)
    np.testing.assert_allclose(g.area, e1t * e2t)
    j, i = 2, 3
    np.testing.assert_allclose(g.diff_x[j, i], 0.5 * (kappa[j, i] + kappa[j, i + 1]) * 10.0 * e2u[j, i] / e1u[j, i])
    np.testing.assert_allclose(g.diff_y[j, i], 0.5 * (kappa[j, i] + kappa[j + 1, i]) * 10.0 * e1v[j, i] / e2v[j, i])
    assert not g.mask[0].any() and g.mask[1:].all()
    ds.drop_vars("e2t").to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(GridError, match="e2t"):
        read_nemo_grid(tmp_path / "bad.nc", 100.0)
    with pytest.raises(GridError, match="no variable 'kappa'"):
        read_nemo_grid(tmp_path / "mesh.nc", tmp_path / "mesh.nc")
