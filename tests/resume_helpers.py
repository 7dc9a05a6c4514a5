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


class SkewBudgetClock(Callback):
    """Moves TimeBudget's clock on one rank ``seconds`` into the past: that rank's clock says stop."""

    def __init__(self, rank: int, seconds: float = 10_000.0) -> None:
        self.rank, self.seconds = rank, seconds

    def on_train_start(self, trainer, pl_module) -> None:
        from callbacks.budget import TimeBudget

        if trainer.global_rank == self.rank:
            for callback in trainer.callbacks:
                if isinstance(callback, TimeBudget):
                    callback._start -= self.seconds


class RngProbe(Callback):
    """``perturb``: each rank draws a different number of values at train start, so the ranks'
    generators differ. On a resume, writes ``<folder>/rank<r>.json``: this rank's CPU generator
    right after the checkpoint was restored, and the one the checkpoint holds for this rank."""

    def __init__(self, folder: str, perturb: bool = False) -> None:
        self.folder, self.perturb = folder, perturb

    def on_train_start(self, trainer, pl_module) -> None:
        import torch

        if self.perturb:
            torch.rand(1 + 5 * trainer.global_rank)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        import hashlib
        import json

        import torch

        def digest(state) -> str:
            return hashlib.sha1(state.numpy().tobytes()).hexdigest()

        os.makedirs(self.folder, exist_ok=True)
        saved = [digest(s["torch"]) for s in checkpoint["rng"]["per_rank"]]
        record = {"now": digest(torch.get_rng_state()), "saved": saved, "rank": trainer.global_rank}
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as handle:
            json.dump(record, handle)


class RaiseAtStep(Callback):
    """Raises a DataError (as the bad-row cap does) on one rank after optimizer step ``step``; the
    other ranks block there instead, as ranks waiting in an NCCL collective do (gloo notices a dead
    peer and fails by itself, NCCL waits for its timeout)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        from mathverify.data.sources import DataError

        if trainer.global_step == self.step:
            if trainer.global_rank == self.rank:
                raise DataError(f"rank {self.rank}: too many bad rows (raised by the test)")
            time.sleep(3600)


class StopAtStep(Callback):
    """Ends ``fit`` cleanly right after optimizer step ``step`` (inside a round)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


class RunOutOfMemory(Callback):
    """Raises torch's out-of-memory error at the first training batch, as a full GPU would."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.75 GiB")
