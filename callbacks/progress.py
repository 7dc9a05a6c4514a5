"""Progress for logs, not terminals: a plain line every N optimizer steps (a cluster job, nohup)."""

from __future__ import annotations

import sys
import time
from typing import Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks.progress import ProgressBar


class LineProgress(ProgressBar):
    """Prints ``step S/T  round R: B/N batches, X rows/s, loss L, round ETA M:SS`` every
    ``every_n_steps`` optimizer steps, and the validation loss at each round end, on rank 0.

    The CLI uses it instead of the terminal progress bar when standard output is not a terminal
    (a live bar there prints nothing until the end); ``--trainer.enable_progress_bar false`` turns
    both off.

    Args:
        every_n_steps: optimizer steps between two lines.
    """

    def __init__(self, every_n_steps: int = 25) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._epoch: Optional[int] = None
        self._started = 0.0
        self._first_batch = 0
        self._rows = 0
        self._last_step = -1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if self._epoch != trainer.current_epoch:  # a new round, or the first batch after a resume
            self._epoch, self._started, self._first_batch, self._rows = trainer.current_epoch, time.monotonic(), batch_idx, 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        labels = batch.get("labels") if isinstance(batch, dict) else None
        self._rows += (len(labels) if labels is not None else 0) * trainer.world_size
        step = trainer.global_step
        if not self._enabled or not trainer.is_global_zero or step == self._last_step or step % self.every_n_steps:
            return
        self._last_step = step
        elapsed = time.monotonic() - self._started
        done = batch_idx + 1 - self._first_batch
        total = trainer.num_training_batches
        left = (total - batch_idx - 1) * elapsed / done if done > 0 and total != float("inf") else float("nan")
        loss = self.get_metrics(trainer, pl_module).get("train/loss")
        parts = [f"step {step}/{trainer.max_steps}", f"round {trainer.current_epoch + 1}: {batch_idx + 1}/{total} batches",
                 f"{self._rows / elapsed:.1f} rows/s" if elapsed > 0 else None,
                 f"loss {float(loss):.4f}" if loss is not None else None, f"round ETA {_clock(left)}"]
        print("  ".join(p for p in parts if p), file=sys.stdout, flush=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("val/loss", "val/acc", "val/auroc") if k in metrics)
        print(f"validation at step {trainer.global_step}: {shown}", file=sys.stdout, flush=True)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: unknown
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
