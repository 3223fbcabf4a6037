"""Data set generation (issue 3 item 3): reproducibility, resumability, Dask, validation, labels."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from diffnorm.cli import main
from diffnorm.generation import (
    DatasetConfig,
    DatasetError,
    check_sample,
    generate_dataset,
    load_manifest,
    sample_seed,
)
from diffnorm.grid import Grid
from diffnorm.normalization import bruteforce_normalization

# US east coast, 1°: 10 x 12 cells with land, a coast and open ocean
CONFIG = {"family": "coast", "family_params": {"lat_range": [30, 40], "lon_range": [-80, -68], "res": 1.0},
          "generator": "isotropic", "generator_params": {"min_length": 1.0, "max_length": 3.0},
          "steps": 10, "seed": 7, "splits": {"train": 3, "val": 1, "test": 2}}


def sample_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.glob("*/sample_*.nc"))


def assert_same_dataset(a: Path, b: Path) -> None:
    files = sample_files(a)
    assert files == sample_files(b) and len(files) == 6
    for f in files:
        assert filecmp.cmp(a / f, b / f, shallow=False), f"{f} differs"
    assert load_manifest(a) == load_manifest(b)
    assert not list(a.glob("**/.*.tmp-*")) and not list(b.glob("**/.*.tmp-*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ds"
    generate_dataset(out, CONFIG, scheduler="synchronous", progress=False)
    return out


def test_layout_manifest_and_sample_contents(reference):
    m = load_manifest(reference)
    assert m["format"] == "diffnorm-dataset/1" and m["complete"] is True
    assert m["family"] == "coast" and m["generator"] == "isotropic"
    assert m["generator_params"]["max_length"] == 3.0 and m["generator_params"]["smoothing"] == 10.0  # defaults filled
    assert m["splits"] == {"train": 3, "val": 1, "test": 2} and m["shape"] == [10, 12]
    assert m["periodic_x"] is False and m["periodic_y"] is False and m["steps"] == 10 and m["seed"] == 7
    assert [(s["split"], s["index"]) for s in m["samples"]] == [
        ("train", 0), ("train", 1), ("train", 2), ("val", 0), ("test", 0), ("test", 1)]
    for s in m["samples"]:
        assert s["file"] == f"{s['split']}/sample_{s['index']:06d}.nc"
        assert s["seed"] == sample_seed(7, s["split"], s["index"])
        assert check_sample(reference / s["file"], s["split"], s["index"], s["seed"], (10, 12)) is None
    with xr.open_dataset(reference / "train/sample_000001.nc") as ds:
        assert ds["mask"].dtype == np.int8 and ds["gamma"].dtype == np.float64
        for v in ("area", "diff_x", "diff_y", "lat", "lon"):
            assert v in ds.variables
        mask = ds["mask"].values.astype(bool)
        assert 0 < mask.sum() < mask.size  # a real coast
        gamma = ds["gamma"].values
        assert np.all(np.isnan(gamma[~mask])) and np.all(np.isfinite(gamma[mask])) and np.all(gamma[mask] > 0)
        assert ds["gamma"].attrs["method"] == "exact" and int(ds["gamma"].attrs["steps"]) == 10
        a = ds.attrs
        assert (a["family"], a["generator"], a["split"], int(a["index"]), int(a["steps"])) == (
            "coast", "isotropic", "train", 1, 10)
        assert int(a["seed"]) == sample_seed(7, "train", 1)
        assert json.loads(a["generator_params"])["min_length"] == 1.0
        assert a["package_version"] and int(a["periodic_x"]) == 0
    # samples differ from each other
    with xr.open_dataset(reference / "train/sample_000000.nc") as d0, \
            xr.open_dataset(reference / "train/sample_000001.nc") as d1:
        assert not np.array_equal(d0["diff_x"].values, d1["diff_x"].values)


def test_labels_match_bruteforce(reference):
    """The stored exact γ agrees with the plain brute force on the stored grid (SPEC §2: 1e-10)."""
    path = reference / "test/sample_000001.nc"
    grid = Grid.from_netcdf(path)
    with xr.open_dataset(path) as ds:
        stored = ds["gamma"].values
    brute = bruteforce_normalization(grid, 10)
    ocean = grid.mask
    assert np.array_equal(np.isnan(stored), ~ocean)
    assert np.max(np.abs(stored[ocean] ** 2 / brute[ocean] ** 2 - 1)) < 1e-10


def test_bit_for_bit_reproducible(reference, tmp_path):
    generate_dataset(tmp_path / "again", CONFIG, scheduler="synchronous", progress=False)
    assert_same_dataset(reference, tmp_path / "again")


def test_other_seed_gives_other_data(reference, tmp_path):
    generate_dataset(tmp_path / "s8", {**CONFIG, "seed": 8, "splits": {"train": 1}}, scheduler="synchronous",
                     progress=False)
    assert not filecmp.cmp(reference / "train/sample_000000.nc", tmp_path / "s8/train/sample_000000.nc",
                           shallow=False)


def test_sample_seeds():
    seeds = {sample_seed(0, s, i) for s in ("train", "val", "test") for i in range(50)}
    assert len(seeds) == 150 and all(0 <= x < 2**63 for x in seeds)
    assert sample_seed(0, "train", 3) == sample_seed(0, "train", 3) != sample_seed(1, "train", 3)
    with pytest.raises(DatasetError, match="unknown split"):
        sample_seed(0, "training", 0)


def test_dask_one_and_two_workers_match_synchronous(reference, tmp_path):
    for n in (1, 2):
        generate_dataset(tmp_path / f"w{n}", CONFIG, scheduler="threads", n_workers=n, progress=False)
        assert_same_dataset(reference, tmp_path / f"w{n}")


def test_dask_local_process_cluster(reference, tmp_path):
    """The default scheduler: a LocalCluster of worker processes (2 here)."""
    generate_dataset(tmp_path / "p2", CONFIG, n_workers=2, progress=False)
    assert_same_dataset(reference, tmp_path / "p2")


def test_local_cluster_workers_keep_thread_caps_but_not_malloc_trim(monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ makes the exact method 2x slower in workers: our clusters drop it."""
    import os

    from diffnorm.generation import _client

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # a caller's own setting reaches the workers as it is

    client, cleanup = _client(None, 1)
    try:
        env = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
    finally:
        cleanup()
    (worker_env,) = env.values()
    assert worker_env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}


def test_dask_existing_cluster_by_address(reference, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        generate_dataset(tmp_path / "addr", CONFIG, scheduler=cluster.scheduler_address, progress=False)
        generate_dataset(tmp_path / "client", CONFIG, scheduler=client, progress=False)
        assert client.status == "running"  # a Client passed in is not closed
    assert_same_dataset(reference, tmp_path / "addr")
    assert_same_dataset(reference, tmp_path / "client")


def test_resume_recomputes_only_missing_and_corrupt(reference, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(reference, work)
    (work / "train/sample_000001.nc").unlink()  # missing
    data = (work / "test/sample_000000.nc").read_bytes()
    (work / "test/sample_000000.nc").write_bytes(data[: len(data) // 2])  # truncated: corrupt
    (work / "val/sample_000000.nc").write_bytes(b"not a netcdf file")  # garbage
    (work / "train/.sample_000002.nc.tmp-12345").write_bytes(data[:100])  # a killed writer's leftover
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["complete"] = False
    (work / "manifest.json").write_text(json.dumps(manifest))
    untouched = ["train/sample_000000.nc", "train/sample_000002.nc", "test/sample_000001.nc"]
    before = {f: os.stat(work / f).st_mtime_ns for f in untouched}
    time.sleep(0.01)
    generate_dataset(work, CONFIG, scheduler="threads", n_workers=2, progress=False)
    assert_same_dataset(reference, work)
    assert {f: os.stat(work / f).st_mtime_ns for f in untouched} == before  # not recomputed
    assert load_manifest(work)["complete"] is True


def test_growing_a_split_keeps_existing_samples(reference, tmp_path):
    small = {**CONFIG, "splits": {"train": 2, "val": 0, "test": 1}}
    generate_dataset(tmp_path / "grow", small, scheduler="synchronous", progress=False)
    generate_dataset(tmp_path / "grow", CONFIG, scheduler="synchronous", progress=False)
    assert_same_dataset(reference, tmp_path / "grow")


def test_killed_run_leaves_no_half_written_sample_and_resumes(reference, tmp_path):
    out = tmp_path / "killed"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CONFIG))
    code = ("import json, sys; from diffnorm.generation import generate_dataset; "
            "generate_dataset(sys.argv[1], json.load(open(sys.argv[2])), scheduler='synchronous', progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), str(cfg)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("train/sample_*.nc")):
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "manifest.json").exists()
    for f in out.glob("*/sample_*.nc"):  # whatever is there under a final name is complete
        assert check_sample(f) is None, f
    generate_dataset(out, CONFIG, scheduler="synchronous", progress=False)
    assert_same_dataset(reference, out)


def test_foreign_or_incompatible_directory(reference, tmp_path):
    with pytest.raises(DatasetError, match="another configuration"):
        generate_dataset(reference, {**CONFIG, "seed": 99}, scheduler="synchronous", progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(other, CONFIG, scheduler="synchronous", progress=False)


@pytest.mark.parametrize("change, message", [
    ({"family": "moon"}, "unknown grid family 'moon'"),
    ({"family": "dlnorm"}, "importer"),
    ({"family": "coast", "family_params": {"res": 1.0}}, "needs parameter"),
    ({"family_params": {**CONFIG["family_params"], "colour": 1}}, "unknown parameter.*colour"),
    ({"generator": "fractal"}, "unknown diffusivity generator 'fractal'"),
    ({"generator_params": {"wobble": 2}}, "unknown parameter.*wobble"),
    ({"steps": 9}, "even"),
    ({"steps": 0}, "even"),
    ({"splits": {"train": -1}}, "train count must be an integer >= 0"),
    ({"splits": {"train": 2.5}}, "train count"),
    ({"splits": {"holdout": 3}}, "unknown split"),
    ({"seed": -3}, "seed"),
    ({"tol": 2.0}, "tol"),
    ({"tol": "tiny"}, "tol"),
    ({"colour": "blue"}, "unknown configuration key"),
])
def test_config_validation(change, message):
    with pytest.raises(DatasetError, match=message):
        DatasetConfig.from_dict({**CONFIG, **change})


def test_yaml_config(tmp_path):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "tol": "1e-12"}))  # YAML 1.1 reads 1e-12 as a string
    cfg = DatasetConfig.from_yaml(path)
    assert cfg.tol == 1e-12 and cfg.splits == {"train": 3, "val": 1, "test": 2}
    assert DatasetConfig().validate().splits == {"train": 10, "val": 1, "test": 190}  # the study's split
    path.write_text("family: [unclosed")
    with pytest.raises(DatasetError, match="YAML"):
        DatasetConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError):
        DatasetConfig.from_yaml(tmp_path / "none.yaml")


def test_cli_generate_and_info(reference, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "seed": 1, "splits": {"train": 9}}))
    out = tmp_path / "cli"
    # options override the file
    rc = main(["dataset", "generate", "--config", str(cfg), "--seed", "7", "--train", "3", "--val", "1",
               "--test", "2", "-o", str(out), "--scheduler", "synchronous", "--no-progress"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    assert_same_dataset(reference, out)
    assert main(["dataset", "info", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "complete" in text and "train 3/3" in text
    (out / "val/sample_000000.nc").unlink()
    assert main(["dataset", "info", str(out)]) == 1
    assert "val   0/1" in capsys.readouterr().out
    # options only
    rc = main(["dataset", "generate", "--family", "coast", "--family-param", "lat_range=[30, 40]",
               "--family-param", "lon_range=[-80, -68]", "--family-param", "res=1", "--generator", "isotropic",
               "--generator-param", "min_length=1", "--generator-param", "max_length=3", "--seed", "7",
               "--train", "3", "--val", "1", "--test", "2", "-o", str(tmp_path / "opts"),
               "--scheduler", "synchronous", "--no-progress"])
    assert rc == 0
    assert_same_dataset(reference, tmp_path / "opts")
    assert main(["dataset", "generate", "--family", "moon", "-o", str(tmp_path / "bad")]) == 1
    assert "unknown grid family" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_failed_samples_reported_after_the_others(reference, tmp_path, monkeypatch):
    import diffnorm.normalization as normalization

    real = normalization.exact_normalization
    calls = {"n": 0}

    def flaky(grid, steps, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("solver exploded")
        return real(grid, steps, **kw)

    monkeypatch.setattr(normalization, "exact_normalization", flaky)
    out = tmp_path / "flaky"
    with pytest.raises(DatasetError, match=r"(?s)1 of 6 sample\(s\) failed.*train/sample_000001.nc.*solver exploded"):
        generate_dataset(out, CONFIG, scheduler="synchronous", progress=False)
    assert load_manifest(out)["complete"] is False
    assert len(sample_files(out)) == 5 and not (out / "train/sample_000001.nc").exists()
    monkeypatch.setattr(normalization, "exact_normalization", real)
    generate_dataset(out, CONFIG, scheduler="synchronous", progress=False)
    assert_same_dataset(reference, out)


def test_shipped_study_config():
    cfg = DatasetConfig.from_yaml(Path(__file__).parents[1] / "configs/dataset-study.yaml")
    assert (cfg.family, cfg.generator, cfg.steps) == ("sphere", "study", 10)
    assert cfg.splits == {"train": 10, "val": 1, "test": 190}


def _nemo_mesh(path: Path, ny: int = 6, nx: int = 8) -> None:
    tmask = np.ones((1, 1, ny, nx), dtype=np.int8)
    tmask[..., 0, :] = 0
    tmask[..., 2:4, 3] = 0
    e = np.full((1, ny, nx), 1.0e5)
    xr.Dataset({"tmask": (("t", "z", "y", "x"), tmask), "e1t": (("t", "y", "x"), e),
                "e2t": (("t", "y", "x"), 0.8 * e)}).to_netcdf(path)


def test_nemo_family_and_generator_mismatch(tmp_path):
    mesh = tmp_path / "mesh.nc"
    _nemo_mesh(mesh)
    cfg = {"family": "nemo", "family_params": {"mesh_path": str(mesh), "periodic_x": True},
           "generator": "isotropic", "steps": 4, "seed": 0, "splits": {"train": 2, "test": 1}}
    out = generate_dataset(tmp_path / "nemo", cfg, scheduler="synchronous", progress=False)
    m = load_manifest(out)
    assert m["shape"] == [6, 8] and m["periodic_x"] is True and m["family_params"]["mesh_path"] == str(mesh)
    with xr.open_dataset(out / "train/sample_000001.nc") as ds:
        assert int(ds.attrs["periodic_x"]) == 1 and int(ds["mask"].sum()) == 6 * 8 - 8 - 2
    # the equatorial generator needs latitudes, which this mesh lacks: refused before any work
    with pytest.raises(DatasetError, match="latitudes"):
        generate_dataset(tmp_path / "nemo_eq", {**cfg, "generator": "equatorial"}, scheduler="synchronous",
                         progress=False)
    assert not (tmp_path / "nemo_eq").exists()


def test_one_spelling_per_number():
    a = DatasetConfig.from_dict({**CONFIG, "family_params": {"lat_range": [30, 40], "lon_range": [-80, -68], "res": 1},
                                 "generator_params": {"min_length": 1, "max_length": 3, "coast_ramp": [2, 5]}})
    b = DatasetConfig.from_dict({**CONFIG, "generator_params": {"min_length": 1.0, "max_length": 3.0,
                                                                "coast_ramp": [2.0, 5.0]}})
    assert a.to_dict() == b.to_dict() and json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def test_many_threaded_workers_write_safely(tmp_path):
    """netCDF-C/HDF5 are not thread-safe: without the module's lock this crashed the process."""
    cfg = {**CONFIG, "steps": 2, "splits": {"train": 12}}
    out = generate_dataset(tmp_path / "t4", cfg, scheduler="threads", n_workers=4, progress=False)
    files = sorted(out.glob("train/sample_*.nc"))
    assert len(files) == 12 and all(check_sample(f) is None for f in files)
