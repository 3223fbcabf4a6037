"""``diffnorm train`` = LightningCLI over :class:`NormalizationTask` and :class:`NormalizationDataModule`.

Defaults added to Lightning's: CSV logger under ``runs/diffnorm`` (checkpoints go there) + TensorBoard under
``runs/tensorboard/diffnorm``, a checkpoint of the best model
by ``val_eps_max`` (``--checkpoint.monitor`` to change) plus ``last.ckpt`` after every epoch
(:class:`LatestCheckpoint`), seed 0. ``data.channels`` and ``data.target`` are linked to the model's.

bf16 precisions on a CPU without bf16 units (no AVX-512 or AMX: AMD Zen 3, most laptops) are emulated by oneDNN
and run about 6× slower than float32 (``benchmarks/bench_train_step.py``), so there they are replaced by
``32-true`` with a warning; ``--precision_fallback false`` keeps them (to repeat a bf16 run bit for bit). The
warning points to ``configs/best-fast.yaml``: in float32 its 16 filters make 3.4× the steps of ``best.yaml``'s 32
and ended a 29-minute Zen 3 run with a 30 % lower test ε_max (README, "4. Training").
"""

from __future__ import annotations

import warnings

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from ..datamodules import NormalizationDataModule
from ..models.inference import cpu_has_bf16
from .callbacks import LatestCheckpoint  # noqa: F401  (re-exported)
from .task import NormalizationTask

#: Lightning precisions that compute in bfloat16
BF16_PRECISIONS = ("bf16-mixed", "bf16-true", "bf16")


def _runs_on_cpu(accelerator) -> bool:
    import torch

    if isinstance(accelerator, str) and accelerator.lower() == "cpu":
        return True
    if accelerator in (None, "auto"):  # Lightning's choice: a GPU (CUDA or MPS) when there is one
        mps = getattr(torch.backends, "mps", None)
        return not torch.cuda.is_available() and not (mps is not None and mps.is_available())
    return False


class DiffnormCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--precision_fallback", type=bool, default=True,
                            help="on a CPU without bf16 units (emulated bf16 is ~6x slower), run bf16 precisions "
                                 "in 32-true instead (with a warning)")
        parser.link_arguments("data.channels", "model.channels")
        parser.link_arguments("data.target", "model.target")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LatestCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val_eps_max",
            "checkpoint.mode": "min",
            "checkpoint.save_last": False,
            "checkpoint.filename": "best-{epoch:04d}-{val_eps_max:.3e}",
            "trainer.logger": [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": "runs", "name": "diffnorm"}},
                {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                 "init_args": {"save_dir": "runs/tensorboard", "name": "diffnorm"}},
            ],
        })

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        precision = str(config.trainer.precision)
        if (config.get("precision_fallback", True) and precision in BF16_PRECISIONS
                and _runs_on_cpu(config.trainer.accelerator) and not cpu_has_bf16()):
            warnings.warn(f"trainer.precision {precision} on this CPU, which has no bf16 units (no AVX-512 or AMX): "
                          "bf16 would be emulated, about 6x slower than float32, so this run uses 32-true "
                          "(--precision_fallback false to keep bf16); in float32 configs/best-fast.yaml's 16 filters "
                          "train better than best.yaml's 32 in the same time on such a CPU", UserWarning, stacklevel=2)
            config.trainer.precision = "32-true"


def cli_main(args: list[str] | None = None, run: bool = True) -> DiffnormCLI:
    """Run LightningCLI on ``args`` (default: ``sys.argv[1:]``).

    ``sys.argv`` is left alone: Lightning's DDP launcher starts the other processes by re-running it
    (``diffnorm train fit ...``), which then gives them the same ``args``.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        return _cli(args, run)


def _cli(args, run):
    return DiffnormCLI(NormalizationTask, NormalizationDataModule, args=args, run=run,
                       seed_everything_default=0, save_config_kwargs={"overwrite": True},
                       auto_configure_optimizers=False)


if __name__ == "__main__":  # pragma: no cover
    cli_main()
