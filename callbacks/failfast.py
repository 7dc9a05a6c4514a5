"""One rank's error ends every rank: nobody waits forever in a collective for a rank that died."""

from __future__ import annotations

import signal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


class EndAllRanksOnError(Callback):
    """Under Lightning's own multi-process launch, an exception on rank 0 kills the other ranks.

    The other direction is Lightning's: when a child rank dies, the launcher's observer ends rank
    0 within ~5 s. But rank 0 dying with an error (a data error over the bad-row cap, a setting)
    leaves the children blocked in their next all-reduce until the process group's 30-minute
    timeout, holding their GPUs. SIGKILL, as Lightning itself uses on Ctrl+C: a rank blocked in a
    collective does not react to SIGTERM. Launchers such as torchrun or srun end the other ranks
    themselves; then this does nothing.
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        launcher = trainer.strategy.launcher
        if trainer.world_size > 1 and trainer.global_rank == 0 and isinstance(launcher, _SubprocessScriptLauncher):
            launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))
