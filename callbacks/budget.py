"""Stop training cleanly before a wall-clock deadline (a Colab or cluster session's limit)."""

from __future__ import annotations

import logging
import shlex
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
    (through the run's ModelCheckpoint), stops, and prints the command that continues. The
    process exits 0. With several processes, rank 0 decides and broadcasts its decision (as
    Lightning's Timer does): the save is collective, so every rank must stop at the same step.

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
        self._steps_timed, self._step_seconds = 0, 0.0
        self._first_step_at = 0.0  # seconds from setup to the first step: start-up a resume pays again
        self.stopped_early = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self._start is None else time.monotonic() - self._start

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self._last_step:  # first micro-batch of an optimizer step
            self._step_started = time.monotonic()
            if self._steps_timed == 0:
                self._first_step_at = self.elapsed()
            self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self._last_step:
            return  # still accumulating: a step is not finished
        step_seconds = time.monotonic() - self._step_started
        self._slowest_step = max(self._slowest_step, step_seconds)
        self._steps_timed += 1
        self._step_seconds += step_seconds
        reserve = self._slowest_step + self._slowest_save + self.margin
        stop = not trainer.should_stop and self.elapsed() + reserve >= self.seconds
        if not trainer.strategy.broadcast(stop, src=0):  # rank 0's clock decides for every rank
            return
        self._save_last(trainer)
        trainer.should_stop = True
        self.stopped_early = True
        logging.getLogger(LIGHTNING_LOG).addFilter(_NO_STOP_LINE)  # our own message says why it stopped
        if trainer.is_global_zero:
            print(self._stop_message(trainer), file=sys.stderr, flush=True)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logging.getLogger(LIGHTNING_LOG).removeFilter(_NO_STOP_LINE)

    def _stop_message(self, trainer: Trainer) -> str:
        step, total = trainer.global_step, trainer.max_steps
        message = (f"TimeBudget: stopped at step {step} of {total} after {self.elapsed():.0f}s of "
                   f"{self.seconds:.0f}s; continue with:\n  {continue_command()}")
        if total and total > step and self._steps_timed:
            left = (total - step) * self._step_seconds / self._steps_timed  # at this process's mean pace
            if left + self._slowest_save + self.margin > self.seconds - self._first_step_at:
                enough = left + self._slowest_save + self.margin + self._first_step_at
                message += (f"\n  about {left:.0f}s of training remain: with the same {self.seconds:.0f}s budget "
                            f"it stops again; --trainer.callbacks.seconds={enough * 1.2:.0f} would finish")
        return message

    def _save_last(self, trainer: Trainer) -> None:
        started = time.monotonic()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        self._slowest_save = max(self._slowest_save, time.monotonic() - started)


LIGHTNING_LOG = "lightning.pytorch.utilities.rank_zero"  # where Lightning's rank_zero_info lines go


class _LightningStopLine(logging.Filter):
    """Lightning's "`Trainer.fit` stopped: `max_epochs=1` reached." after a budget stop, which reads as
    if training had finished."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("`Trainer.fit` stopped:")


_NO_STOP_LINE = _LightningStopLine()


def continue_command(argv: Optional[list[str]] = None) -> str:
    """This process's command line with ``--ckpt_path last`` (replacing any other ``--ckpt_path``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["mathverify", *kept, "--ckpt_path", "last"])
