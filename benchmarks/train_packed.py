"""Train a config's model on fields packed by ``benchmarks/pack_fields.py`` (no NetCDF, no Dask needed).

Why: GPU machines often hold PyTorch + Lightning and little else. This runs the same
:class:`~diffnorm.trainers.NormalizationTask` and data module as ``diffnorm train fit --config`` (same patches,
augmentation, standardization, checkpoint format) on whatever accelerator Lightning finds, with patch
extraction in ``--workers`` DataLoader processes. The last checkpoint loads like any other
(``diffnorm predict CKPT ...``, ``diffnorm evaluate CKPT ...``).

Usage: python benchmarks/train_packed.py configs/best-gpu.yaml PACK.npz OUT_DIR [--max-time 00:00:07:00]
           [--override '{"model": {"model_kwargs": {"filters": 32}}, "data": {"batch_size": 32}}']
           [--init-weights sphere-1deg]     # warm start: a shipped model, .pt or .ckpt with the same network
       python benchmarks/train_packed.py --time-only MODEL [--repeat 50]   # forward-pass timing, no training
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pack_fields.py, beside this file
from pack_fields import read_fields  # noqa: E402

from diffnorm.datamodules import NormalizationDataModule  # noqa: E402
from diffnorm.datamodules.normalization import Field  # noqa: E402
from diffnorm.trainers import NormalizationTask  # noqa: E402
from diffnorm.trainers.callbacks import LatestCheckpoint  # noqa: E402


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
        out = [Field(item, self.input_transform, self.target_transform) for item in read_fields(self.pack, split)]
        self.steps = out[0].steps
        return out


def parse_override(text: str) -> dict:
    """``--override`` as JSON when it is JSON (so ``3e-4`` is a number), else as YAML (where PyYAML, YAML 1.1,
    reads ``3e-4`` as text and only ``3.0e-4`` as a number)."""
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        out = yaml.safe_load(text)
    if out is None:
        return {}
    if not isinstance(out, dict):
        raise SystemExit(f"--override must be a mapping (JSON or YAML), got {text!r}")
    return out


def time_forward(model: torch.nn.Module, shape: tuple[int, ...], repeat: int = 20) -> dict:
    """Milliseconds of the network's forward pass on one whole field of ``shape`` (C, ny, nx), batch 1 and batch 4
    (the four mirror images of test-time augmentation), on the device the model is on. The cost does not depend
    on the values, so the input is random."""
    model = model.eval()
    device = next(model.parameters()).device
    x = torch.randn(1, *shape, device=device)
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


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?")
    p.add_argument("pack", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--max-time", default=None, help="DD:HH:MM:SS (default: the config's)")
    p.add_argument("--override", default="{}", help="YAML/JSON merged into the config")
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: the config's)")
    p.add_argument("--init-weights", default=None,
                   help="start from these network weights (warm start; the same as the model's init_weights)")
    p.add_argument("--time-only", default=None, metavar="MODEL", help="only time MODEL's forward pass on a 1° field")
    p.add_argument("--repeat", type=int, default=20,
                   help="forward passes timed (with --time-only, or after training; 0: no timing)")
    a = p.parse_args()
    if a.time_only:
        from diffnorm.pretrained import load_model

        model, meta = load_model(a.time_only)
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        shape = (len(meta["channels"]), *meta.get("shape", (180, 360)))
        print(json.dumps({"model": a.time_only, "device": device_name(), "shape": shape,
                          "forward_ms": time_forward(model, shape, a.repeat)}))
        return
    if not (a.config and a.pack and a.out):
        p.error("config, pack and out are required (unless --time-only)")
    cfg = merge(yaml.safe_load(open(a.config)), parse_override(a.override))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.get("seed_everything", 0))
    data_cfg = dict(cfg["data"])
    if a.workers is not None:
        data_cfg["num_workers"] = a.workers
    dm = PackedDataModule(a.pack, **data_cfg)
    if a.init_weights:
        cfg["model"]["init_weights"] = a.init_weights
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
               "forward_ms": time_forward(task.model, (len(dm.channels), *dm.shape), a.repeat) if a.repeat else None,
               "device": device_name(), "init_weights": cfg["model"].get("init_weights"),
               "best_val_eps_mean": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
               "config": cfg}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))


if __name__ == "__main__":
    main()
