"""Pack the training/validation fields of a config's data sets into one compressed ``.npz``.

Why: a GPU machine without NetCDF or Dask (an HPC node, a cloud image that holds only PyTorch) can still train
diffnorm models on the exact fields: ``benchmarks/train_packed.py`` reads the pack. Per field it keeps what
:class:`diffnorm.datamodules.normalization.Field` reads: ``diff_x``, ``diff_y``, ``gamma`` (float32: ~1e-7
relative, far below any learned error), ``area``, ``mask`` (once per distinct grid) and ``steps``/periodicity.

Usage: python benchmarks/pack_fields.py configs/best.yaml PACK.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile

import numpy as np
import yaml


def add_field(arrays: dict, index: dict, grids: dict, split: str, item: dict, **extra) -> None:
    """Put one field (``diff_x``, ``diff_y``, ``gamma``, ``area``, ``mask``, ``steps``, periodicity, ``path``) into
    a pack being built: float32 fields, each distinct grid's area and mask once; ``extra`` goes into its entry."""
    key = f"{split}{len(index[split])}"
    h = hashlib.sha1(np.ascontiguousarray(item["area"]).tobytes()
                     + np.ascontiguousarray(item["mask"]).tobytes()).hexdigest()[:12]
    if h not in grids:
        grids[h] = f"grid{len(grids)}"
        arrays[grids[h] + "_area"] = item["area"]
        arrays[grids[h] + "_mask"] = np.asarray(item["mask"]).astype(np.int8)
    for name in ("diff_x", "diff_y", "gamma"):
        arrays[f"{key}_{name}"] = np.asarray(item[name]).astype(np.float32)
    index[split].append({"key": key, "grid": grids[h], "steps": item["steps"], "periodic_x": item["periodic_x"],
                         "periodic_y": item["periodic_y"], "path": item["path"], **extra})


def read_fields(pack: str | os.PathLike, split: str, every: int = 1):
    """The fields of one split of a pack (every ``every``-th), the inverse of :func:`add_field`: dicts of float64
    ``mask``, ``diff_x``, ``diff_y``, ``gamma``, the ``area``, ``steps``, periodicity and ``path``. Each grid is
    decompressed once, not once per field."""
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    with np.load(pack) as z:
        index = json.loads(bytes(z["index"]).decode())[split][::every]
        grids = {g: {"mask": z[g + "_mask"].astype(np.float64), "area": z[g + "_area"]}
                 for g in {e["grid"] for e in index}}
        for e in index:
            yield {**grids[e["grid"]],
                   **{n: z[f"{e['key']}_{n}"].astype(np.float64) for n in ("diff_x", "diff_y", "gamma")},
                   "steps": e["steps"], "periodic_x": e["periodic_x"], "periodic_y": e["periodic_y"],
                   "path": e["path"]}


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """``np.savez`` under a temporary name, then renamed: a killed run never leaves half a file under ``path``."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=os.path.basename(path) + ".tmp", suffix=".npz")
    os.close(fd)
    try:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_pack(arrays: dict, index: dict, out: str | os.PathLike, compress: bool = True) -> None:
    save_npz_atomic(out, {**arrays, "index": np.frombuffer(json.dumps(index).encode(), np.uint8)}, compress)


def pack(config: str, out: str) -> dict:
    from diffnorm.datasets import NormalizationDataset

    data = yaml.safe_load(open(config))["data"]
    arrays: dict[str, np.ndarray] = {}
    index = {"train": [], "val": []}
    grids: dict[str, str] = {}
    for split, dirs in (("train", data["data_dirs"]), ("val", data.get("val_dirs") or data["data_dirs"])):
        for d in dirs:
            ds = NormalizationDataset(d, split)
            for i in range(len(ds)):
                add_field(arrays, index, grids, split, ds[i])
    write_pack(arrays, index, out)
    return index


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("out")
    a = p.parse_args()
    idx = pack(a.config, a.out)
    print(f"{len(idx['train'])} train + {len(idx['val'])} val fields -> {a.out} "
          f"({os.path.getsize(a.out) / 2**20:.1f} MiB)")
