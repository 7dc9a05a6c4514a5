"""Stop training cleanly before a wall-clock deadline (a Colab or cluster session's limit)."""

from __future__ import annotations

import sys
import time
from typing import Optional

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class TimeBudget(Callback):
    """Ends ``fit`` before ``seconds`` of this process's wall time are spent, with a checkpoint.

    Unlike Lightning's Timer, the clock is per process and starts at ``setup``: it is not
    restored from the checkpoint, so a resumed run gets its own full budget. After each
    optimizer step it reserves the slowest step seen, the slowest checkpoint save seen and
    ``margin`` seconds; when the next step would cross the deadline it writes ``last.ckpt``
    (through the run's ModelCheckpoint), stops, and says how to resume. The process exits 0.

    Args:
        seconds: wall-clock budget of this process, from setup.
        margin: extra seconds kept in reserve (process exit, logger flush).
    """

    def __init__(self, seconds: float, margin: float = 10.0) -> None:
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.seconds, self.margin = float(seconds), float(margin)
        self._start: Optional[float] = None
        self._step_started = 0.0
        self._slowest_step = 0.0
        self._slowest_save = 0.0
        self._last_step = -1
        self.stopped_early = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self._start is None else time.monotonic() - self._start

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self._last_step:  # first micro-batch of an optimizer step
            self._step_started = time.monotonic()
            self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self._last_step:
            return  # still accumulating: a step is not finished
        self._slowest_step = max(self._slowest_step, time.monotonic() - self._step_started)
        reserve = self._slowest_step + self._slowest_save + self.margin
        if self.elapsed() + reserve < self.seconds or trainer.should_stop:
            return
        self._save_last(trainer)
        trainer.should_stop = True
        self.stopped_early = True
        if trainer.is_global_zero:
            message = (f"TimeBudget: stopped at step {trainer.global_step} after {self.elapsed():.0f}s of "
                       f"{self.seconds:.0f}s; continue with the same command plus --ckpt_path last")
            print(message, file=sys.stderr, flush=True)

    def _save_last(self, trainer: Trainer) -> None:
        started = time.monotonic()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        self._slowest_save = max(self._slowest_save, time.monotonic() - started)
