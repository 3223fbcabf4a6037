"""LightningModule: one of :mod:`diffnorm.models`, a target transform and a loss; SPEC §3 metrics every epoch.

Validation (and test) run the model in eval mode on whole fields and log, every validation epoch,
``val_loss`` and the SPEC §3 metrics of ε = (γ̂² − γ²)/γ² on the de-standardized γ: ``val_eps_q9999``,
``val_eps_max``, ``val_eps_mean`` (means over fields of the per-field Q9999 / max / mean of |ε|) and
``val_rmse``. ε is computed from the ratio γ̂/γ in float64 (it is the same number as the one from γ̂ and γ:
the analytic prior and the standardization cancel).

The checkpoint carries everything needed to use the model without the data: the hyperparameters (model,
channels, target, loss) and, under ``"diffnorm_meta"``, the fitted input/target transforms, M, the
periodicity and the training shape (see :func:`diffnorm.pretrained.load_model`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ..losses import check_tail_fraction, coast_weights, get_loss
from ..models import build_model
from ..transforms.inputs import STUDY_CHANNELS, InputTransform
from ..transforms.targets import TargetTransform

META_FORMAT = "diffnorm-model/1"


def per_field_metrics(eps: torch.Tensor, mask: torch.Tensor) -> list[dict[str, float]]:
    """SPEC §3 per-sample metrics from ε ``(B, 1, ny, nx)`` on the ocean cells of ``mask``."""
    rows = []
    for b in range(eps.shape[0]):
        e = eps[b, 0][mask[b, 0].bool()].detach().cpu().double().numpy()
        a = np.abs(e)
        rows.append({"rmse": float(np.sqrt(np.mean(e**2))), "q9999": float(np.quantile(a, 0.9999)),
                     "max": float(a.max()), "mean": float(a.mean())})
    return rows


class TimeAwareCosine:
    """LR factor ``0.01 + 0.99·(1 + cos(π·p))/2`` with ``p`` the run's progress: the larger of ``step/total`` and,
    when the trainer has a time limit (``max_time``: Lightning's ``Timer`` callback), elapsed/allowed time.

    A step-based cosine with a time limit stops wherever the clock says — on a slower machine, or a busy one,
    with the learning rate still high. Lightning's Timer keeps its elapsed time in checkpoints, so a resumed
    run continues the same curve. With several processes (DDP) each has its own clock: ``broadcast``
    (``trainer.strategy.broadcast``) hands every rank rank 0's time, so all take the same step and the replicas
    stay identical (every rank steps its scheduler at the same steps, so the collective always matches)."""

    def __init__(self, total_steps: int, timer=None, broadcast=None, warmup_steps: int = 0):
        self.total = max(1, int(total_steps))
        self.timer = timer
        self.broadcast = broadcast
        self.warmup = max(0, int(warmup_steps))

    def progress(self, step: int) -> float:
        p = step / self.total
        duration = getattr(self.timer, "_duration", None)
        if duration:
            elapsed = self.timer.time_elapsed("train") / duration
            if self.broadcast is not None:
                elapsed = float(self.broadcast(elapsed, 0))
            p = max(p, elapsed)
        return min(max(p, 0.0), 1.0)

    def __call__(self, step: int) -> float:
        factor = 0.01 + 0.99 * 0.5 * (1.0 + float(np.cos(np.pi * self.progress(step))))
        if step < self.warmup:  # linear ramp: Adam's first steps are ~lr per weight, which wrecks a warm start
            factor *= (step + 1) / self.warmup
        return factor


def _check_number(name: str, value: Any, positive: bool = False) -> None:
    """A named error for a rate that is not a real number: PyYAML (YAML 1.1) reads ``3e-4`` without a dot as
    the string ``"3e-4"``, which would otherwise fail deep inside the optimizer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 \
            or (positive and value == 0):
        hint = " (YAML 1.1 reads 3e-4 as text: write 3.0e-4)" if isinstance(value, str) else ""
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}{hint}")


class NormalizationTask(L.LightningModule):
    """Args:
        model: ``"cnn"`` or ``"unet"``; ``model_kwargs`` go to its constructor (``in_channels`` is set from
            ``channels``).
        channels, target: must equal the data module's (the CLI links them).
        loss: ``"mse"`` (masked, on the standardized target) or ``"relative"`` (E[ε²], SPEC §3).
        lr, weight_decay: Adam(W); ``scheduler``: ``"none"``, ``"cosine"`` (to 1 % of lr over the run's steps),
            ``"cosine_time"`` (the same curve over whichever comes first, the steps or ``trainer.max_time``: a
            time-limited run anneals fully on any machine, at the price of bit-reproducibility, since the
            schedule then follows the wall clock; :class:`TimeAwareCosine`) or ``"onecycle"``.
        warmup_steps: with ``cosine_time``, the learning rate rises linearly over this many first steps (a
            warm start from trained weights: without it Adam's first steps, about ``lr`` per weight whatever the
            gradient, undo much of the training).
        coast_weight, coast_radius: training loss weight ``1 + coast_weight`` on ocean cells within
            ``coast_radius`` cells of land (:func:`diffnorm.losses.coast_weights`); 0: every ocean cell alike.
        tail_weight, tail_fraction: add ``tail_weight ×`` the mean loss of the batch's worst ``tail_fraction`` of
            ocean cells to the training loss (:func:`diffnorm.losses.tail_mean`): weight on the tail (ε_max)
            that the mean hardly sees; 0: the plain mean. Validation and test losses stay the plain mean.
        init_weights: start from the network weights of a trained model (a shipped name, a ``.pt`` or a ``.ckpt``
            with the same architecture, channels and target) with a fresh optimizer — a warm restart (use
            ``warmup_steps``). A CNN with fewer ``filters`` and/or fewer ``blocks`` (the first ``dilations``
            alike) but otherwise the same is grown into this one, computing the same function at the start
            (:func:`diffnorm.models.cnn.grow_state_dict`).
            ``--ckpt_path`` resumes a run instead (weights, optimizer, schedule, clock) and overrides these weights.
            The loaded model's input and target standardizations are kept (the data module standardizes the new
            fields with them), so the warm start predicts exactly the source model's γ at step 0.
        refit_standardization: with ``init_weights``, fit the standardizations on the new training fields instead
            (the behaviour before 2026-12-07): the loaded weights then see shifted units, which on sphere-1deg's
            466 training fields raised the validation ε_mean by 22.5 % before the first step.
        compile: run the network through ``torch.compile`` (one graph per input shape) when fitting;
            ``channels_last``: NHWC memory layout. Both only change speed, not the weights' meaning (the
            checkpoint is the plain model's state dict): on the 2-core CPU together 1.8x more training steps
            per second for the 16-filter dilated CNN (109 → 62 ms per step of 4 patches of 192x192).
    """

    def __init__(self, model: str = "cnn", model_kwargs: dict[str, Any] | None = None,
                 channels: list[str] | None = None, target: str = "gamma", loss: str = "mse",
                 lr: float = 1e-3, weight_decay: float = 0.0, scheduler: str = "none", warmup_steps: int = 0,
                 coast_weight: float = 0.0, coast_radius: int = 2, tail_weight: float = 0.0,
                 tail_fraction: float = 0.01, compile: bool = False, channels_last: bool = False,
                 init_weights: str | None = None, refit_standardization: bool = False):
        super().__init__()
        channels = list(channels) if channels is not None else list(STUDY_CHANNELS)
        _check_number("lr", lr, positive=True)
        _check_number("weight_decay", weight_decay)
        self.save_hyperparameters()
        self.hparams.channels = channels
        kw = dict(model_kwargs or {})
        kw["in_channels"] = len(channels)
        self.model_kwargs = kw
        self.model = build_model(model, **kw)
        #: the input/target standardization of ``init_weights``' model, kept on the new fields (see ``setup``)
        self._kept_standardization: tuple[dict, dict] | None = None
        if init_weights:
            self._init_weights(init_weights)
        self.loss_fn = get_loss(loss)
        check_tail_fraction(tail_fraction)  # at construction, not at the first training step
        self.target_tf = TargetTransform(target)
        self.input_tf = InputTransform(channels)
        self.meta: dict = {}
        self._rows: dict[str, list] = {"val": [], "test": []}

    def _init_weights(self, ref: str) -> None:
        from ..pretrained import load_model  # weights_only=True; shipped names, .pt and .ckpt

        source, meta = load_model(ref)
        if list(meta["channels"]) != list(self.hparams.channels) or meta["target"] != self.hparams.target:
            raise ValueError(f"init_weights {ref}: channels/target {meta['channels']}/{meta['target']} differ from "
                             f"the model's {self.hparams.channels}/{self.hparams.target}")
        state = source.state_dict()
        if self._grows(meta, source):
            from ..models.cnn import grow_state_dict

            try:
                state = grow_state_dict(state, self.model)
            except ValueError as exc:
                raise ValueError(f"init_weights {ref}: {exc}") from exc
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"init_weights {ref}: another network ({meta['model']} {meta['model_kwargs']}): "
                             f"{exc}") from exc
        if not self.hparams.get("refit_standardization"):
            target = meta.get("target_transform") or {"kind": meta["target"], "mean": meta["target_mean"],
                                                      "std": meta["target_std"]}
            self._kept_standardization = (dict(meta["input_transform"]), dict(target))

    def _grows(self, meta: dict, source) -> bool:
        """Whether ``init_weights`` names the same CNN with fewer filters and/or fewer blocks: then its weights are
        grown into this one (:func:`diffnorm.models.cnn.grow_state_dict`, the same function at the start). The
        new blocks come after the trained ones, so the trained layers' dilations must open this one's list. The
        sizes are the built networks', so a config that leaves ``filters`` or ``blocks`` at its default compares
        alike."""
        if meta.get("model") != self.hparams.model or self.hparams.model != "cnn":
            return False
        ignore = {"filters", "blocks", "dilations", "periodic_x", "periodic_y", "closed", "in_channels"}
        mine = {k: v for k, v in self.model_kwargs.items() if k not in ignore}
        theirs = {k: v for k, v in meta["model_kwargs"].items() if k not in ignore}
        width, depth = source.input_layer.conv.out_channels, len(source.blocks)
        my_width, my_depth = self.model.input_layer.conv.out_channels, len(self.model.blocks)
        if mine != theirs or width > my_width or depth > my_depth or (width, depth) == (my_width, my_depth):
            return False
        if self.model.dilations[: len(source.dilations)] != source.dilations:
            raise ValueError(f"growing a trained CNN: its layers' dilations {source.dilations} must open the new "
                             f"network's list {self.model.dilations} (new blocks come after the trained ones)")
        return True

    # -- data link ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            self.attach_datamodule(dm, stage)

    def attach_datamodule(self, dm, stage: str) -> None:
        """Link the task and ``dm`` as a Trainer's ``setup`` does: the margin, the data, the kept or fitted
        standardizations, periodicity and the meta. Public so that tools working without a Trainer (e.g.
        ``benchmarks/noise_scale.py``) see exactly the training run's batches."""
        if list(dm.channels) != list(self.hparams.channels) or dm.target != self.hparams.target:
            raise ValueError(f"data module channels/target {dm.channels}/{dm.target} differ from the model's "
                             f"{self.hparams.channels}/{self.hparams.target}")
        dm.margin = int(self.model.margin)
        dm.setup(stage)
        if self._kept_standardization is not None:
            dm.use_standardization(*self._kept_standardization)
        self.target_tf = dm.target_transform
        self.input_tf = dm.input_transform
        self.model.periodic_x, self.model.periodic_y = dm.periodic_x, dm.periodic_y
        self.model.closed = dm.closed
        self.meta = self.build_meta(dm.steps, dm.periodic_x, dm.periodic_y, dm.shape)
        self._speed_up()

    def _speed_up(self) -> None:
        """channels-last layout and ``torch.compile`` of the network's body (once; see the class docstring)."""
        if self.hparams.get("channels_last"):
            self.model.to(memory_format=torch.channels_last)
        if self.hparams.get("compile") and "body" not in vars(self.model):
            # an instance attribute shadowing the method: the module, its parameters and state dict stay plain
            self.model.body = torch.compile(self.model.body, dynamic=False)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.get("channels_last") else x

    def build_meta(self, steps: int, periodic_x: bool, periodic_y: bool, shape) -> dict:
        kw = dict(self.model_kwargs)
        kw.update(periodic_x=bool(periodic_x), periodic_y=bool(periodic_y))
        return {"format": META_FORMAT, "model": self.hparams.model, "model_kwargs": kw,
                "channels": list(self.hparams.channels), "input_transform": self.input_tf.to_dict(),
                "target": self.target_tf.kind, "target_mean": self.target_tf.mean, "target_std": self.target_tf.std,
                "target_transform": self.target_tf.to_dict(),
                "steps": int(steps), "periodic_x": bool(periodic_x), "periodic_y": bool(periodic_y),
                "shape": [int(s) for s in shape], "margin": int(self.model.margin), "loss": self.hparams.loss,
                "standardizer": None, "use_training_predict": True}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diffnorm_meta"] = self.meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.meta = dict(checkpoint.get("diffnorm_meta") or {})
        if self.meta:
            self.target_tf = TargetTransform.from_dict(self.meta.get("target_transform") or {
                "kind": self.meta["target"], "mean": self.meta["target_mean"], "std": self.meta["target_std"]})
            self.input_tf = InputTransform.from_dict(self.meta["input_transform"])

    # -- steps ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "train_set", None) is not None:
            dm.train_set.epoch = int(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = self._layout(batch["x"])
        pred = self.model.body(x) if x.shape[-1] != batch["y"].shape[-1] else self.model(x)
        mask = batch["mask"]
        if self.hparams.get("coast_weight"):
            mask = mask * coast_weights(mask, self.hparams.coast_radius, self.hparams.coast_weight)
        loss = self.loss_fn(pred, batch["y"], mask, self.target_tf, tail_weight=self.hparams.get("tail_weight", 0.0),
                            tail_fraction=self.hparams.get("tail_fraction", 0.01))
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch: dict, split: str) -> torch.Tensor:
        pred = self.model(self._layout(batch["x"]))
        loss = self.loss_fn(pred, batch["y"], batch["mask"], self.target_tf)
        self.log(f"{split}_loss", loss, on_epoch=True, sync_dist=True, batch_size=batch["x"].shape[0])
        eps = self.target_tf.eps(pred.double(), batch["y"].double())
        eps = torch.where(batch["mask"].bool(), eps, torch.zeros_like(eps))  # exact cells (exact_small): ε = 0
        self._rows[split] += per_field_metrics(eps, batch.get("ocean", batch["mask"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def _eval_end(self, split: str) -> None:
        rows, self._rows[split] = self._rows[split], []
        if not rows:
            return
        for name in ("q9999", "max", "mean", "rmse"):
            key = f"{split}_rmse" if name == "rmse" else f"{split}_eps_{name}"
            self.log(key, float(np.mean([r[name] for r in rows])), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # -- optimization ---------------------------------------------------------------------
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay) \
            if self.hparams.weight_decay else torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = self.hparams.scheduler
        if self.hparams.get("warmup_steps") and sched != "cosine_time":
            raise ValueError(f"warmup_steps works with scheduler cosine_time, not {sched!r}")
        if sched == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if sched == "cosine":
            s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.01 * self.hparams.lr)
        elif sched == "cosine_time":
            from lightning.pytorch.callbacks import Timer

            timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
            sync = self.trainer.strategy.broadcast if self.trainer.world_size > 1 else None
            factor = TimeAwareCosine(total, timer, sync, self.hparams.get("warmup_steps", 0))
            # a plain function: LambdaLR saves a callable object's __dict__ (the Timer) in checkpoints, which
            # torch.load(weights_only=True) would then refuse
            s = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: factor(step))
        elif sched == "onecycle":
            s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=total)
        else:
            raise ValueError(f"unknown scheduler {sched!r}; choose none, cosine, cosine_time or onecycle")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
