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

from diffnorm.datasets import NormalizationDataset


def pack(config: str, out: str) -> dict:
    data = yaml.safe_load(open(config))["data"]
    arrays: dict[str, np.ndarray] = {}
    index = {"train": [], "val": []}
    grids: dict[str, str] = {}
    for split, dirs in (("train", data["data_dirs"]), ("val", data.get("val_dirs") or data["data_dirs"])):
        for d in dirs:
            ds = NormalizationDataset(d, split)
            for i in range(len(ds)):
                item = ds[i]
                key = f"{split}{len(index[split])}"
                h = hashlib.sha1(np.ascontiguousarray(item["area"]).tobytes()
                                 + np.ascontiguousarray(item["mask"]).tobytes()).hexdigest()[:12]
                if h not in grids:
                    grids[h] = f"grid{len(grids)}"
                    arrays[grids[h] + "_area"] = item["area"]
                    arrays[grids[h] + "_mask"] = item["mask"].astype(np.int8)
                for name in ("diff_x", "diff_y", "gamma"):
                    arrays[f"{key}_{name}"] = item[name].astype(np.float32)
                index[split].append({"key": key, "grid": grids[h], "steps": item["steps"],
                                     "periodic_x": item["periodic_x"], "periodic_y": item["periodic_y"],
                                     "path": item["path"]})
    arrays["index"] = np.frombuffer(json.dumps(index).encode(), np.uint8)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)), suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    return index


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("out")
    a = p.parse_args()
    idx = pack(a.config, a.out)
    print(f"{len(idx['train'])} train + {len(idx['val'])} val fields -> {a.out} "
          f"({os.path.getsize(a.out) / 2**20:.1f} MiB)")
