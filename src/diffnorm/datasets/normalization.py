"""Random-access reader of a ``diffnorm-dataset/1`` directory (README: "generation and format").

:class:`NormalizationDataset` opens one NetCDF file per item and returns plain numpy arrays;
turning them into tensors (and standardizing, augmenting) is left to the training code.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:  # torch is a dependency, but the reader does not need it to work
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object

from ..generation import NETCDF_LOCK, SPLITS, DatasetError, load_manifest

ARRAYS = ("diff_x", "diff_y", "area", "mask", "gamma")
INT_ATTRS = ("seed", "steps", "index")
STR_ATTRS = ("family", "generator", "generator_params", "split", "package_version")


class NormalizationDataset(_TorchDataset):
    """Samples of one split of a data set directory, in index order.

    ``dataset[i]`` is a dict with

    - ``"diff_x"``, ``"diff_y"``, ``"area"``, ``"mask"`` (1.0 ocean / 0.0 land), ``"gamma"`` (NaN on
      land): ``(ny, nx)`` arrays of ``dtype`` (float64 by default), as stored (SPEC §1/§4);
    - ``"lat"``, ``"lon"``: ``(ny, nx)`` arrays when the file has them;
    - ``"periodic_x"``, ``"periodic_y"``: bool;
    - ``"family"``, ``"generator"``, ``"generator_params"`` (JSON string), ``"split"``,
      ``"package_version"``: str; ``"seed"``, ``"steps"``, ``"index"``: int; ``"path"``: str.

    ``transform``, when given, is applied to that dict. A missing sample raises
    :class:`FileNotFoundError`, an unreadable or incomplete one :class:`~diffnorm.generation.DatasetError`;
    both name the file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", dtype=np.float64,
                 transform: Callable[[dict], dict] | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.transform = transform
        self.manifest = load_manifest(self.root)
        if not self.manifest.get("complete", True):
            warnings.warn(f"the data set {self.root} is incomplete (its generation did not finish); missing "
                          "samples raise FileNotFoundError. Run `diffnorm dataset generate` on it again.",
                          stacklevel=2)
        samples = sorted((s for s in self.manifest["samples"] if s["split"] == split), key=lambda s: s["index"])
        self.samples = samples
        self.shape = tuple(self.manifest["shape"])
        self.steps = int(self.manifest["steps"])
        self.periodic_x = bool(self.manifest.get("periodic_x", False))
        self.periodic_y = bool(self.manifest.get("periodic_y", False))

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, i: int) -> Path:
        return self.root / self.samples[self._index(i)]["file"]

    def _index(self, i: int) -> int:
        n = len(self.samples)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for the {self.split} split of {self.root} ({n} samples)")
        return int(i) % n

    def __getitem__(self, i: int) -> dict:
        entry = self.samples[self._index(i)]
        item = read_sample(self.root / entry["file"], dtype=self.dtype)
        if item["mask"].shape != self.shape:
            raise DatasetError(f"{self.root / entry['file']} has shape {item['mask'].shape}, the manifest says "
                               f"{self.shape}")
        if item["split"] != self.split or item["index"] != entry["index"] or item["seed"] != entry["seed"]:
            raise DatasetError(f"{self.root / entry['file']} holds sample {item['split']}/{item['index']} "
                               f"(seed {item['seed']}), not {self.split}/{entry['index']} (seed {entry['seed']}) "
                               "as the manifest says")
        if self.transform is not None:
            item = self.transform(item)
        return item

    def __repr__(self) -> str:
        return (f"NormalizationDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, family={self.manifest.get('family')!r})")


def read_sample(path: str | os.PathLike, dtype=np.float64) -> dict:
    """One sample file as the dict :class:`NormalizationDataset` returns."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing sample file {path}; run `diffnorm dataset generate` again on its "
                                "directory to compute the missing samples")
    try:
        with NETCDF_LOCK, xr.open_dataset(path, cache=False) as ds:
            missing = [v for v in ARRAYS if v not in ds.variables]
            if missing:
                raise DatasetError(f"sample file {path} is missing variable(s): {', '.join(missing)}")
            item = {name: np.asarray(ds[name].values, dtype=dtype) for name in ARRAYS}
            for name in ("lat", "lon"):
                if name in ds.variables:
                    item[name] = np.asarray(ds[name].values, dtype=dtype)
            attrs = dict(ds.attrs)
    except DatasetError:
        raise
    except Exception as exc:  # netCDF4/HDF5 raise many exception types on corrupt files
        raise DatasetError(f"cannot read sample file {path}: {type(exc).__name__}: {exc}; delete it and run "
                           "`diffnorm dataset generate` again on its directory") from exc
    missing = [k for k in INT_ATTRS + STR_ATTRS if k not in attrs]
    if missing:
        raise DatasetError(f"sample file {path} is missing attribute(s): {', '.join(missing)}")
    item["periodic_x"] = bool(int(attrs.get("periodic_x", 0)))
    item["periodic_y"] = bool(int(attrs.get("periodic_y", 0)))
    for k in INT_ATTRS:
        item[k] = int(attrs[k])
    for k in STR_ATTRS:
        item[k] = str(attrs[k])
    item["path"] = str(path)
    return item


def generator_params_of(item: dict) -> dict:
    """The generator parameters of a sample dict, decoded from JSON."""
    return json.loads(item["generator_params"])
