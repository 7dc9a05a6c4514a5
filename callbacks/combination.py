"""Fit how text and evidence combine, per case, on each validation's rows (``mathverify.model.combination``)."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from mathverify.errors import SettingsError
from mathverify.model.combination import IDENTITY, fit_case


class FitCombination(Callback):
    """Refits the module's per-case weights (a, b, c) of P = sigmoid(a m + b d + c) on the validation rows.

    m is the text's margin, d the evidence shift. Each case (rows with no labelled sibling,
    ``val``; rows with some, ``val_seen``) gets its own three numbers, fitted on that case's rows
    of this validation (``fit_case``: a prior around the identity, adopted only when clearly better),
    and the checkpoint saved after this validation holds them beside the thresholds. List it
    before ``VerificationMetrics`` and ``DecisionThreshold``: they read ``epoch_outputs()``, whose
    probabilities use the module's current weights, so the metrics and thresholds are those of
    the probabilities predict will give. ``val/loss`` stays the loss of m + d (what training
    optimises, and what picks the checkpoint).

    Logged per case: ``<view>/combination_text``, ``_evidence``, ``_bias`` (the weights used),
    ``<view>/combination_adopted`` (1 or 0) and ``<view>/loss_combined`` (mean loss with them;
    fitted on the same rows, so in-sample).

    Args:
        min_rows: a case with fewer validation rows keeps the identity (1, 1, 0).
        prior: precision of the Gaussian prior around the identity (in rows' summed log-loss units).
        min_gain: adopt a fit only when twice its log-likelihood gain over the identity is at
            least this (11.34: chi-square, 3 degrees of freedom, 1 %).
    """

    def __init__(self, min_rows: int = 50, prior: float = 1.0, min_gain: float = 11.34) -> None:
        if min_rows < 1 or prior < 0 or min_gain < 0:
            raise ValueError("min_rows must be >= 1, prior and min_gain >= 0")
        self.min_rows, self.prior, self.min_gain = min_rows, prior, min_gain

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from callbacks.threshold import DecisionThreshold

        if not hasattr(pl_module, "combination") or not hasattr(pl_module, "epoch_outputs"):
            raise TypeError("FitCombination needs a module with combination and epoch_outputs() "
                            "(mathverify.model.module.VerifierModule)")
        mine = next(i for i, c in enumerate(trainer.callbacks) if c is self)
        if any(isinstance(c, DecisionThreshold) for c in trainer.callbacks[:mine]):
            raise SettingsError("callbacks.combination.FitCombination must be listed before "
                                "callbacks.threshold.DecisionThreshold (the thresholds are tuned on its probabilities)")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        rows = pl_module.epoch_outputs()  # gathered once per validation: every rank fits the same
        for case, prefix in enumerate(("val", "val_seen")):
            mine = rows["labelled"].bool() == bool(case)
            if int(mine.sum()) < self.min_rows:
                pl_module.combination.set_case(case, IDENTITY)
                continue
            fitted = fit_case(rows["margin"][mine], rows["shift"][mine], rows["labels"][mine].float(),
                              self.prior, self.min_gain)
            pl_module.combination.set_case(case, fitted["weights"])
            a, b, c = fitted["weights"]
            values = {"combination_text": a, "combination_evidence": b, "combination_bias": c,
                      "combination_adopted": float(fitted["adopted"]),
                      "loss_combined": fitted["nll_fit"] if fitted["adopted"] else fitted["nll_identity"]}
            for name, value in values.items():
                pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
