"""``diffnorm train`` = LightningCLI over :class:`NormalizationTask` and :class:`NormalizationDataModule`.

Defaults added to Lightning's: CSV logger under ``runs/diffnorm`` (checkpoints go there) + TensorBoard under
``runs/tensorboard/diffnorm``, a checkpoint of the best model
by ``val_eps_max`` (``--checkpoint.monitor`` to change) plus ``last.ckpt`` after every epoch
(:class:`LatestCheckpoint`), seed 0. ``data.channels`` and ``data.target`` are linked to the model's.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from ..datamodules import NormalizationDataModule
from .callbacks import LatestCheckpoint  # noqa: F401  (re-exported)
from .task import NormalizationTask


class DiffnormCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
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
