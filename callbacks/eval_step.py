"""validate/test log at the training step of the checkpoint they evaluate, beside fit's curves."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class LogAtCheckpointStep(Callback):
    """Lightning logs the metrics of a ``validate``/``test`` run at its own counter of optimizer
    steps, which such a run never moves (0), so they land at the start of the training curves
    instead of at the step whose weights were evaluated. This sets that counter from the checkpoint.
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn in ("validate", "test") and "global_step" in checkpoint:
            trainer.fit_loop.epoch_loop._batches_that_stepped = int(checkpoint["global_step"])
