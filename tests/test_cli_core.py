import numpy as np
import xarray as xr

from diffnorm.cli import main
from diffnorm.io import read_gamma
from diffnorm.normalization import exact_normalization, image_normalization
from tests.conftest import make_grid


def test_coast_normalize_metrics_pipeline(tmp_path, capsys):
    grid_file = tmp_path / "g.nc"
    args = ["grid", "coast", "--lat", "-40", "-30", "--lon", "150", "160", "--res", "1", "-o", str(grid_file)]
    assert main(args) == 0
    with xr.open_dataset(grid_file) as ds:
        assert set(ds.data_vars) >= {"mask", "area", "diff_x", "diff_y"} and ds.attrs["periodic_x"] == 0
        mask = ds["mask"].values.astype(bool)
    assert 0 < mask.sum() < mask.size  # Tasman sea with the Australian coast
    exact, rand = tmp_path / "e.nc", tmp_path / "r.nc"
    assert main(["normalize", str(grid_file), "--steps", "4", "-o", str(exact), "--no-progress"]) == 0
    assert main(["normalize", str(grid_file), "--steps", "4", "--method", "randomized", "--samples", "200",
                 "--seed", "3", "-o", str(rand), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "exact:" in out and " s " in out
    with xr.open_dataset(rand) as ds:
        assert ds["gamma"].attrs["method"] == "randomized" and ds["gamma"].attrs["samples"] == 200
        assert ds["gamma"].attrs["seed"] == 3 and ds["gamma"].attrs["steps"] == 4
    g = read_gamma(exact)
    assert np.array_equal(np.isnan(g), ~mask)
    assert main(["metrics", str(rand), str(exact)]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert 0.5 * np.sqrt(2 / 200) < float(lines["rmse"]) < 1.5 * np.sqrt(2 / 200)


def test_normalize_matches_library_and_errors_leave_no_file(tmp_path, capsys):
    g = make_grid(periodic_x=True)
    g.to_netcdf(tmp_path / "g.nc")
    out = tmp_path / "out.nc"
    assert main(["normalize", str(tmp_path / "g.nc"), "--steps", "6", "-o", str(out), "--no-progress"]) == 0
    np.testing.assert_allclose(read_gamma(out), exact_normalization(g, 6), rtol=1e-12)
    images = tmp_path / "images.nc"
    assert main(["normalize", str(tmp_path / "g.nc"), "--steps", "6", "--method", "images", "-o", str(images)]) == 0
    np.testing.assert_allclose(read_gamma(images), image_normalization(g, 6), rtol=1e-12)
    probing = tmp_path / "probing.nc"
    assert main(["normalize", str(tmp_path / "g.nc"), "--steps", "6", "--algorithm", "probing", "-o", str(probing),
                 "--no-progress"]) == 0
    np.testing.assert_allclose(read_gamma(probing), read_gamma(out), rtol=1e-10)
    bad = tmp_path / "bad.nc"
    assert main(["normalize", str(tmp_path / "g.nc"), "--steps", "5", "-o", str(bad)]) == 1
    assert "even integer" in capsys.readouterr().err
    assert not bad.exists() and not list(tmp_path.glob(".bad.nc*"))
    assert main(["normalize", str(tmp_path / "absent.nc"), "--steps", "4", "-o", str(bad)]) == 1
    assert not bad.exists()


def test_grid_coast_polar_limit_puts_land_poleward(tmp_path, capsys):
    """--polar-limit: the seed study's polar continents, so that a global grid fits the shipped 1° model."""
    out = tmp_path / "globe.nc"
    base = ["grid", "coast", "--lat", "-90", "90", "--lon", "0", "360", "--res", "10"]
    assert main(base + ["--polar-limit", "60", "-o", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        mask = ds["mask"].values.astype(bool)
        assert ds.attrs["periodic_x"] == 1 and ds.attrs["polar_limit"] == 60
    lat = -85 + 10 * np.arange(18)  # cell centres, south to north
    assert not mask[np.abs(lat) >= 60].any() and mask[np.abs(lat) < 60].any()
    free = tmp_path / "free.nc"
    assert main(base + ["-o", str(free)]) == 0
    with xr.open_dataset(free) as ds:  # without the limit the Arctic Ocean (centre 85° N) stays ocean
        assert ds["mask"].values.astype(bool)[-1].any() and "polar_limit" not in ds.attrs
    for bad in ("0", "95"):
        assert main(base + ["--polar-limit", bad, "-o", str(tmp_path / "bad.nc")]) == 1
        assert "--polar-limit must be in (0, 90]" in capsys.readouterr().err
    assert not (tmp_path / "bad.nc").exists()


def test_top_level_help_examples_parse():
    """Every command in ``diffnorm --help``'s "typical use" parses: the examples stay in step with the options."""
    import shlex

    from diffnorm.cli import EPILOG, build_parser

    commands = [line.strip() for line in EPILOG.splitlines() if line.strip().startswith("diffnorm ")]
    assert len(commands) == 4
    parser = build_parser()
    for line in commands:
        args, extra = parser.parse_known_args(shlex.split(line)[1:])
        assert callable(args.func) and not extra, line
