"""Train a config's model on fields packed by ``benchmarks/pack_fields.py`` (no NetCDF, no Dask needed).

Why: GPU machines often hold PyTorch + Lightning and little else. This runs the same
:class:`~diffnorm.trainers.NormalizationTask` and data module as ``diffnorm train fit --config`` (same patches,
augmentation, standardization, checkpoint format) on whatever accelerator Lightning finds, with patch
extraction in ``--workers`` DataLoader processes. The last checkpoint loads like any other
(``diffnorm predict CKPT ...``, ``diffnorm evaluate CKPT ...``).

Usage: python benchmarks/train_packed.py configs/best-gpu.yaml PACK.npz OUT_DIR [--max-time 00:00:07:00]
           [--override '{"model": {"model_kwargs": {"filters": 32}}, "data": {"batch_size": 32}}']
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from diffnorm.datamodules import NormalizationDataModule
from diffnorm.trainers import NormalizationTask
from diffnorm.trainers.callbacks import LatestCheckpoint


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class PackedDataModule(NormalizationDataModule):
    """The data module reading its train/val fields from a pack instead of data set directories."""

    def __init__(self, pack: str, **kwargs):
        kwargs.pop("test_dirs", None)
        super().__init__(**kwargs)
        self.pack = pack

    def _load(self, split: str, dirs) -> list:
        from diffnorm.datamodules.normalization import Field

        with np.load(self.pack) as z:
            index = json.loads(bytes(z["index"]).decode())[split]
            out = []
            for e in index:
                item = {"mask": z[e["grid"] + "_mask"].astype(np.float64), "area": z[e["grid"] + "_area"],
                        **{n: z[f"{e['key']}_{n}"].astype(np.float64) for n in ("diff_x", "diff_y", "gamma")},
                        "steps": e["steps"], "periodic_x": e["periodic_x"], "periodic_y": e["periodic_y"],
                        "path": e["path"]}
                out.append(Field(item, self.input_transform, self.target_transform))
        self.steps = out[0].steps
        return out


def time_forward(task: NormalizationTask, dm: PackedDataModule, repeat: int = 20) -> dict:
    """Milliseconds of the trained network's forward pass on one whole validation field (batch 1, and batch 4:
    the four mirror images of test-time augmentation), on the device it trained on."""
    model = task.model.eval()
    device = next(model.parameters()).device
    x = dm.val_dataloader().dataset[0]["x"][None].to(device)
    times = {}
    for batch in (1, 4):
        xb = x.expand(batch, -1, -1, -1).contiguous()
        with torch.no_grad():
            for _ in range(3):
                model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeat):
                model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
        times[f"batch{batch}"] = (time.perf_counter() - t0) / repeat * 1e3
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("pack")
    p.add_argument("out")
    p.add_argument("--max-time", default=None, help="DD:HH:MM:SS (default: the config's)")
    p.add_argument("--override", default="{}", help="YAML/JSON merged into the config")
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: the config's)")
    a = p.parse_args()
    cfg = merge(yaml.safe_load(open(a.config)), yaml.safe_load(a.override) or {})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.get("seed_everything", 0))
    data_cfg = dict(cfg["data"])
    if a.workers is not None:
        data_cfg["num_workers"] = a.workers
    dm = PackedDataModule(a.pack, **data_cfg)
    task = NormalizationTask(channels=dm.channels, target=dm.target, **cfg["model"])
    tr = dict(cfg["trainer"])
    tr.pop("logger", None)
    if a.max_time:
        tr["max_time"] = a.max_time
    ckpt = ModelCheckpoint(dirpath=out, filename="best", monitor="val_eps_mean", mode="min", every_n_epochs=1,
                           enable_version_counter=False)
    last = LatestCheckpoint(dirpath=out)  # the final weights, also when max_time stops the run mid-epoch
    logger = CSVLogger(save_dir=str(out / "logs"), name="", version="")
    tr.setdefault("accelerator", "auto")
    tr.setdefault("devices", 1)
    trainer = L.Trainer(logger=logger, callbacks=[ckpt, last], **tr)
    t0 = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    elapsed = time.perf_counter() - t0
    shutil.copy(out / "logs" / "metrics.csv", out / "metrics.csv")
    summary = {"steps": int(trainer.global_step), "epochs": int(trainer.current_epoch), "fit_s": elapsed,
               "forward_ms": time_forward(task, dm),
               "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "best_val_eps_mean": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
               "config": cfg}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))


if __name__ == "__main__":
    main()
