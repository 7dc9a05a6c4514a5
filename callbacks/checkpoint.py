"""Checkpoints at every round end: best by a validation metric, always a fresh ``last.ckpt``,
written atomically."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mathverify.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint through ``mathverify.atomic``: a kill during a save leaves the
    previous file intact (the rename is the only visible step)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        with atomic_file(path, "wb") as out:
            torch.save(checkpoint, out)


class RoundCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with defaults for rounds, atomic writes and a ``last.ckpt``
    that never lags.

    Lightning 2.6 refreshes ``last.ckpt`` only when a top-k checkpoint was written at the same
    step, so after a round whose metric did not improve, ``fit --ckpt_path last`` would silently
    resume from an older round. This callback refreshes ``last.ckpt`` at every save point.
    What a checkpoint holds (adapter and head weights only) is decided by the LightningModule.

    Args:
        monitor: metric that picks the best checkpoint (threshold-free: loss or AUROC).
        mode: ``min`` or ``max`` for ``monitor``.
        save_top_k: how many best checkpoints to keep.
        filename: name pattern of the best checkpoints; ``{round}`` counts from 1, as the rounds
            table does (``{epoch}`` is Lightning's 0-based epoch).
        dirpath: folder; default ``<run folder>/checkpoints``.
        every_n_train_steps: also save ``last.ckpt`` every N optimizer steps inside a round
            (0: only at round ends), so a crash loses at most N steps.
    """

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min", save_top_k: int = 1,
                 filename: str = "round{round}-step{step}", dirpath: Optional[str] = None,
                 every_n_train_steps: int = 0) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode=mode, save_top_k=save_top_k,
                         save_last=True, auto_insert_metric_name=False)
        self.every_n_steps_last = every_n_train_steps
        self._last_step_saved_as_last = -1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def _monitor_candidates(self, trainer: Trainer) -> dict:
        candidates = super()._monitor_candidates(trainer)
        candidates["round"] = torch.tensor(trainer.current_epoch + 1)  # one numbering with the rounds table
        return candidates

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step_saved_as_last = trainer.global_step

    def _refresh_last(self, trainer: Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        if self._last_step_saved_as_last != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # global_step moves only on optimizer steps, so this fires once, right after step N
        # (the micro-batches that merely accumulate see the same step and find it saved).
        step = trainer.global_step
        if self.every_n_steps_last and step and step % self.every_n_steps_last == 0:
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
