"""The gradient noise scale of a training run at given weights: how noisy one step's gradient is.

Why: every warm restart of ``sphere-1deg`` on the CPU (batches of 4 full-height patches) first climbs above the
model it started from, even at lr 5e-5, and a few hundred steps do not bring it back. If one batch's gradient is
mostly noise, a step moves the weights mostly at random, and only a larger batch (or many more, smaller steps)
makes progress. The *simple noise scale* of McCandlish et al. (2018, "An Empirical Model of Large-Batch
Training", appendix A), ``B_simple = tr(Σ) / |G|²`` with ``G`` the true gradient and ``Σ`` one patch's gradient
covariance, is the batch size at which a step's noise equals its signal: far below it, a step's direction is
mostly noise, and doubling the batch nearly halves the steps a given loss needs; far above it, a larger batch
buys nothing.

It is estimated from ``K`` gradients ``g_k`` of independent batches of ``b`` patches, drawn by the run's own data
module (same patches, flips and standardization as training), at fixed weights (no optimizer step):
``S = Σ_k |g_k − ḡ|² / (K − 1)`` estimates ``tr(Σ)/b`` without bias, ``|ḡ|² − S/K`` estimates ``|G|²`` without
bias, and ``B_simple = b S / (|ḡ|² − S/K)`` (a ratio, so only nearly unbiased; the jackknife gives its error).

Usage: python benchmarks/noise_scale.py configs/best.yaml PACK.npz --init-weights sphere-1deg [--batches 40]
           [--override '{"data": {"patch_size": [180, 91]}}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_packed.py, beside this file
from train_packed import PackedDataModule, merge, parse_override  # noqa: E402

from diffnorm.trainers import NormalizationTask  # noqa: E402


def noise_scale(grads: np.ndarray, batch_size: int) -> dict[str, float]:
    """``B_simple`` (in patches) and its parts from ``grads``, one row per batch of ``batch_size`` patches.

    ``grad_norm2``: the unbiased estimate of |G|²; ``noise_trace``: of tr(Σ) for one patch; ``signal_share``: the
    expected share of |G|² in one batch's squared gradient norm, ``|G|² / (|G|² + tr(Σ)/b)``; ``b_simple_se``:
    the jackknife standard error of ``b_simple`` over the rows.
    """
    grads = np.asarray(grads, dtype=np.float64)
    if grads.ndim != 2 or grads.shape[0] < 3:
        raise ValueError(f"need at least 3 batch gradients as rows of a 2-D array, got shape {grads.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of patches, got {batch_size}")
    k = grads.shape[0]
    norms2 = np.einsum("ij,ij->i", grads, grads)  # |g_k|²
    total = grads.sum(axis=0)

    def estimate(n: int, sum_g: np.ndarray, sum_norms2: float) -> tuple[float, float]:
        """(|G|², tr(Σ)/b) from n rows' sum and sum of squared norms: Σ|g − ḡ|² = Σ|g|² − n|ḡ|²."""
        mean2 = float(sum_g @ sum_g) / n**2
        spread = (sum_norms2 - n * mean2) / (n - 1)
        return mean2 - spread / n, spread

    def b_simple_of(norm2: float, spread: float) -> float:
        return batch_size * spread / norm2 if norm2 > 0 else float("inf")

    norm2, spread = estimate(k, total, float(norms2.sum()))
    b_simple = b_simple_of(norm2, spread)
    # jackknife: the estimate without batch i, from the sums (no copy of the array)
    leave_one_out = np.array([b_simple_of(*estimate(k - 1, total - grads[i], float(norms2.sum() - norms2[i])))
                              for i in range(k)])
    se = float(np.sqrt((k - 1) / k * ((leave_one_out - leave_one_out.mean()) ** 2).sum()))
    return {"batches": k, "batch_size": int(batch_size), "grad_norm2": norm2, "noise_trace": batch_size * spread,
            "b_simple": float(b_simple), "b_simple_se": se,
            "signal_share": norm2 / (norm2 + spread) if norm2 > 0 else 0.0}


def batch_gradients(task: NormalizationTask, dm: PackedDataModule, batches: int) -> tuple[np.ndarray, list[float]]:
    """The flattened loss gradient of each of the first ``batches`` training batches of ``dm``, at fixed weights,
    over as many epochs as that takes (each epoch draws new patches, as in training)."""
    params = [p for p in task.model.parameters() if p.requires_grad]
    rows, losses = [], []
    task.train()
    for epoch in range(batches):  # at least one batch an epoch
        loader = dm.train_dataloader()
        dm.train_set.epoch = epoch  # what NormalizationTask.on_train_epoch_start does
        for batch in loader:
            if len(rows) == batches:
                return np.stack(rows), losses
            batch = dm.on_after_batch_transfer(dm.on_before_batch_transfer(batch, 0), 0)  # as a Trainer would
            task.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # training_step's self.log without a Trainer: nothing to log to
                warnings.simplefilter("ignore")
                loss = task.training_step(batch, len(rows))
            loss.backward()
            rows.append(torch.cat([p.grad.reshape(-1) for p in params]).double().numpy())
            losses.append(float(loss.detach()))
    return np.stack(rows), losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("pack")
    p.add_argument("--init-weights", required=True, help="the weights to measure at (shipped name, .pt or .ckpt)")
    p.add_argument("--batches", type=int, default=40, help="independent batches (default 40)")
    p.add_argument("--override", default="{}", help="YAML/JSON merged into the config (as train_packed.py)")
    p.add_argument("-o", "--output", default=None, help="write the result as JSON here too")
    a = p.parse_args()
    if a.batches < 3:
        p.error(f"--batches must be at least 3, got {a.batches}")
    cfg = merge(yaml.safe_load(open(a.config)), parse_override(a.override))
    L.seed_everything(cfg.get("seed_everything", 0))
    data_cfg = dict(cfg["data"])
    data_cfg["num_workers"] = 0
    dm = PackedDataModule(a.pack, **data_cfg)
    model_cfg = dict(cfg["model"], init_weights=a.init_weights)
    model_cfg.pop("compile", None)  # one gradient per batch: compiling would cost more than it saves
    task = NormalizationTask(channels=dm.channels, target=dm.target, **model_cfg)
    task.attach_datamodule(dm, "fit")  # what NormalizationTask.setup does under a Trainer
    t0 = time.perf_counter()
    grads, losses = batch_gradients(task, dm, a.batches)
    out = noise_scale(grads, int(dm.batch_size))
    out.update(weights=a.init_weights, mean_loss=float(np.mean(losses)), seconds=time.perf_counter() - t0,
               parameters=int(grads.shape[1]))
    print(json.dumps(out, indent=1))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
