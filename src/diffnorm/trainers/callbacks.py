"""Callbacks of diffnorm's training; importable without LightningCLI's extra dependencies (jsonargparse)."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the state after every training epoch and at the end of training, to resume from and to ship.

    Lightning's ``save_last`` only copies the monitored (best) checkpoint when one is saved, so with a noisy
    monitor such as ``val_eps_max`` its ``last.ckpt`` can be an early epoch and the final weights are lost."""

    def __init__(self, dirpath=None, filename: str = "last", every_n_epochs: int = 1) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False,
                         every_n_epochs=every_n_epochs, save_on_train_epoch_end=True,
                         enable_version_counter=False)

    def on_train_end(self, trainer, pl_module) -> None:
        # a run stopped mid-epoch (max_time, max_steps) keeps its last steps too
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
