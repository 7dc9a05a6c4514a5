"""Checkpoints at every round end: best by a validation metric, and always a fresh ``last.ckpt``."""

from __future__ import annotations

from typing import Literal, Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class RoundCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with defaults for rounds and a ``last.ckpt`` that never lags.

    Lightning 2.6 refreshes ``last.ckpt`` only when a top-k checkpoint was written at the same
    step, so after a round whose metric did not improve, ``fit --ckpt_path last`` would silently
    resume from an older round. This callback refreshes ``last.ckpt`` at every save point.
    What a checkpoint holds (adapter and head weights only) is decided by the LightningModule.

    Args:
        monitor: metric that picks the best checkpoint (threshold-free: loss or AUROC).
        mode: ``min`` or ``max`` for ``monitor``.
        save_top_k: how many best checkpoints to keep.
        filename: name pattern of the best checkpoints.
        dirpath: folder; default ``<run folder>/checkpoints``.
    """

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min", save_top_k: int = 1,
                 filename: str = "round{epoch}-step{step}", dirpath: Optional[str] = None) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode=mode, save_top_k=save_top_k,
                         save_last=True, auto_insert_metric_name=False)
        self._last_step_saved_as_last = -1

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step_saved_as_last = trainer.global_step

    def _refresh_last(self, trainer: Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        if self._last_step_saved_as_last != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
