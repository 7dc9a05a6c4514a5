"""Callbacks used by the resume tests, importable in subprocesses (tests/ goes on PYTHONPATH)."""

import os
import signal

from lightning.pytorch import Callback


class RecordRows(Callback):
    """Appends 'global_step row_id' for every training row the model consumes, fsynced per batch."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.path, "a") as handle:
            handle.writelines(f"{trainer.global_step} {row}\n" for row in batch["ids"])
            handle.flush()
            os.fsync(handle.fileno())


class KillAtStep(Callback):
    """SIGKILLs its own process right after optimizer step ``step``: no cleanup, no last save."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
