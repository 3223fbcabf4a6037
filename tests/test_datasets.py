"""NormalizationDataset: random access to a generated data set, clear errors on bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from diffnorm.datasets import NormalizationDataset
from diffnorm.datasets.normalization import generator_params_of
from diffnorm.generation import DatasetError, generate_dataset, sample_seed

CONFIG = {"family": "coast", "family_params": {"lat_range": [30, 40], "lon_range": [-80, -68], "res": 1.0},
          "generator": "anisotropic", "steps": 8, "seed": 3, "splits": {"train": 3, "val": 1, "test": 2}}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dsread") / "ds"
    generate_dataset(out, CONFIG, scheduler="synchronous", progress=False)
    return out


def test_lengths_and_items(dataset_dir):
    sizes = {s: len(NormalizationDataset(dataset_dir, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 2}
    ds = NormalizationDataset(dataset_dir, "train")
    assert ds.shape == (10, 12) and ds.steps == 8 and not ds.periodic_x and "train" in repr(ds)
    for i in range(len(ds)):
        item = ds[i]
        path = dataset_dir / f"train/sample_{i:06d}.nc"
        with xr.open_dataset(path) as raw:
            for name in ("diff_x", "diff_y", "area", "gamma", "lat", "lon"):
                assert item[name].dtype == np.float64 and item[name].shape == (10, 12)
                np.testing.assert_array_equal(item[name], raw[name].values)
            np.testing.assert_array_equal(item["mask"], raw["mask"].values.astype(np.float64))
        assert set(np.unique(item["mask"])) == {0.0, 1.0}
        ocean = item["mask"] == 1
        assert np.all(np.isnan(item["gamma"][~ocean])) and np.all(item["gamma"][ocean] > 0)
        assert item["periodic_x"] is False and item["periodic_y"] is False
        assert (item["split"], item["index"], item["steps"]) == ("train", i, 8)
        assert item["seed"] == sample_seed(3, "train", i)
        assert item["family"] == "coast" and item["generator"] == "anisotropic"
        assert generator_params_of(item)["max_length_x"] == 6.0
        assert item["path"] == str(path) and item["package_version"]
    np.testing.assert_array_equal(ds[-1]["gamma"], ds[2]["gamma"])


def test_dtype_transform_and_dataloader(dataset_dir):
    import torch

    ds = NormalizationDataset(dataset_dir, "test", dtype=np.float32,
                              transform=lambda item: {**item, "log_gamma": np.log(item["gamma"])})
    item = ds[0]
    assert item["gamma"].dtype == np.float32 and "log_gamma" in item
    loader = torch.utils.data.DataLoader(NormalizationDataset(dataset_dir, "train"), batch_size=2)
    batch = next(iter(loader))
    assert tuple(batch["diff_x"].shape) == (2, 10, 12) and batch["index"].tolist() == [0, 1]


def test_index_errors(dataset_dir):
    ds = NormalizationDataset(dataset_dir, "val")
    with pytest.raises(IndexError, match="out of range"):
        ds[1]
    with pytest.raises(IndexError):
        ds[-2]
    with pytest.raises(TypeError):
        ds["0"]
    with pytest.raises(ValueError, match="unknown split"):
        NormalizationDataset(dataset_dir, "holdout")


def test_missing_and_corrupt_files(dataset_dir, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(dataset_dir, work)
    (work / "train/sample_000000.nc").unlink()
    (work / "train/sample_000001.nc").write_bytes(b"garbage")
    with xr.open_dataset(work / "test/sample_000000.nc") as raw:
        raw.load().drop_vars("gamma").to_netcdf(work / "test/sample_000001.nc")
    manifest = json.loads((work / "manifest.json").read_text())
    (work / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.warns(UserWarning, match="incomplete"):
        ds = NormalizationDataset(work, "train")
    (work / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="sample_000000.nc"):
        ds[0]
    with pytest.raises(DatasetError, match="sample_000001.nc"):
        ds[1]
    assert ds[2]["index"] == 2  # the others still read
    with pytest.raises(DatasetError, match="missing variable.*gamma"):
        NormalizationDataset(work, "test")[1]
    # a file that is not the sample the manifest names
    shutil.copy(work / "test/sample_000000.nc", work / "val/sample_000000.nc")
    with pytest.raises(DatasetError, match="manifest"):
        NormalizationDataset(work, "val")[0]


def test_bad_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        NormalizationDataset(tmp_path, "train")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json"):
        NormalizationDataset(tmp_path, "train")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something/9"}))
    with pytest.raises(DatasetError, match="diffnorm-dataset/1"):
        NormalizationDataset(tmp_path, "train")


def test_picklable_for_dataloader_workers(dataset_dir):
    import pickle

    ds = pickle.loads(pickle.dumps(NormalizationDataset(dataset_dir, "val")))
    assert len(ds) == 1 and ds[0]["split"] == "val"
