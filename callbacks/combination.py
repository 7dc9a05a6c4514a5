"""Fit how text and evidence combine, per case, on each validation's rows (``mathverify.model.combination``)."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from mathverify.errors import SettingsError
import torch

from mathverify.model.combination import IDENTITY, fit_cases


class FitCombination(Callback):
    """Refits the module's weights of P = sigmoid(a m + b d + c) on each validation's rows.

    m is the text's margin, d the evidence shift. Each case (rows with no labelled sibling,
    ``val``; rows with some, ``val_seen``) with at least ``case_rows`` rows fits its own text weight
    a on its rows (logistic regression with a Gaussian prior around the identity; with no text,
    nothing), the intercept following it, c = (1 - a) * mean(m over those rows), and with
    ``fit_evidence`` also its evidence weight b and a free intercept (``fit_cases``). A
    smaller case (a seen view of a few dozen rows) gets a text weight fitted on the rows of both
    cases (``fit_cases``; the text model is one model whichever case a row is in), so noise text is
    dropped there too. The evidence keeps b = 1 by default: the head was fitted to every labelled
    training row before step 1 (``EvidenceWarmStart``), and a few hundred validation rows
    recalibrate it worse than it is. The intercept reads no label: the text is re-weighted around
    its own mean, so its weight moves no base rate away from the training sum m + d, whose head
    learnt beside the text's offset. A free intercept learnt the validation questions' own rate of
    right rows (600 rows are some 75 questions, whose rate differs from the test questions' by a
    few points) and carried it to every test row: on real math unseen over three splits it
    cost 0.0-1.5 points against evidence only (docs/real-data.md, "The text's intercept follows
    its weight"). The checkpoint saved after this
    validation holds them beside the thresholds. List it before ``VerificationMetrics`` and
    ``DecisionThreshold``: they read ``epoch_outputs()``, whose probabilities use the module's
    current weights, so the metrics and thresholds are those of the probabilities predict will
    give. ``val/loss`` stays the loss of m + d (what training optimises, and what picks the checkpoint).

    The fit is adopted whatever its gain (``min_gain`` 0): the text has to earn its weight on
    held-out questions. A gate that keeps the identity unless the fit is clearly better (the
    chi-square test, ``min_gain=None``) keeps a = 1 for text whose noise is small overall but
    decides the rows the evidence leaves near P = 0.5: a text model that learnt its training
    questions by heart moves exactly those (one generator's 2-1-1 and 2-2 answers) the wrong way.

    Logged per case: ``<view>/combination_text``, ``_evidence``, ``_bias`` (the weights used) and
    ``<view>/loss_combined`` (mean loss with them, in-sample); ``val/combination_adopted`` (1 when
    any case moved from the identity).

    Args:
        min_rows: with fewer validation rows in all, nothing is fitted (the identity).
        case_rows: a case with fewer validation rows keeps b = 1, c = 0 and gets the text weight
            fitted on the rows of both cases. Most rows with labelled siblings are decided by the
            labels, so a seen view of ~80 rows holds a handful that inform three numbers: on
            gsm8k-gpt3 seen its own fit (text 1.5-1.8, evidence 0.6) scored 0.937 and 0.918 on two
            seeds, where the identity scored 0.942 and 0.944 (2026-12-04).
        prior: precision of the Gaussian prior around the identity (in rows' summed log-loss units).
        min_gain: adopt a fit only when twice its log-likelihood gain over the identity is at
            least this; 0: always; None: the 1 % point of chi-square for the numbers fitted
            (11.34 for a case's three, 6.63 for the text weight alone).
        fit_evidence: a case with ``case_rows`` rows also refits the evidence's weight b (the
            default until 2026-12-05). On 10 runs of real unseen cases (math, gsm8k-gpt3,
            gsm8k-codex; text + evidence and evidence only; 600 validation rows) the refitted
            (a, b, c) left the test ECE above the identity's in every run, by 0.002-0.020, at the
            same accuracy at 0.5 within 0.2 points. With c = 0 instead (a alone fitted) math
            unseen /4 lost 2.2 points: a weight on an off-centre margin moves the base rate,
            which is why the intercept follows the weight.
    """

    def __init__(self, min_rows: int = 50, case_rows: int = 200, prior: float = 1.0,
                 min_gain: float | None = 0.0, fit_evidence: bool = False) -> None:
        if min_rows < 1 or case_rows < 1 or prior < 0 or (min_gain is not None and min_gain < 0):
            raise ValueError("min_rows and case_rows must be >= 1, prior and min_gain >= 0")
        self.min_rows, self.case_rows, self.prior, self.min_gain = min_rows, case_rows, prior, min_gain
        self.fit_evidence = fit_evidence

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
        # Only inside fit: ``validate`` reports the checkpoint as saved, with the weights predict uses
        # (and runs under inference mode, where no fit can take a gradient).
        if trainer.sanity_checking or getattr(trainer.state.fn, "value", trainer.state.fn) != "fit":
            return
        rows = pl_module.epoch_outputs()  # gathered once per validation: every rank fits the same
        labelled = rows["labelled"].bool()
        counts = [int((~labelled).sum()), int(labelled.sum())]
        if sum(counts) < self.min_rows:
            pl_module.combination.load_list([list(IDENTITY), list(IDENTITY)])
            return
        rows_fitted, adopted = [list(IDENTITY), list(IDENTITY)], []
        for case in (0, 1):
            mine = labelled == bool(case)
            if counts[case] >= self.case_rows:  # enough rows: the case's own text weight (its intercept follows)
                text = bool(rows["margin"][mine].abs().max() > 0)  # evidence only: no margin, nothing to centre
                fitted = fit_cases(rows["margin"][mine], rows["shift"][mine], rows["labels"][mine].float(),
                                   labelled[mine], (case,) if self.fit_evidence else (), self.prior, self.min_gain,
                                   centred=(case,) if text else ())
                rows_fitted[case] = fitted["rows"][case]
            elif counts[case]:  # too few: only the text weight, fitted on the rows of both cases
                fitted = fit_cases(rows["margin"], rows["shift"], rows["labels"].float(), labelled, (),
                                   self.prior, self.min_gain)
                rows_fitted[case] = fitted["rows"][case]
            else:
                continue
            adopted.append(fitted["adopted"])
        pl_module.combination.load_list(rows_fitted)
        pl_module.log("val/combination_adopted", float(any(adopted)), on_step=False, on_epoch=True, sync_dist=False)
        z = pl_module.combination(rows["margin"], rows["shift"], labelled).double().cpu()  # [N], the weights just set
        losses = torch.nn.functional.binary_cross_entropy_with_logits(z, rows["labels"].double().cpu(), reduction="none")
        for case, prefix in enumerate(("val", "val_seen")):
            if counts[case] == 0:
                continue
            a, b, c = rows_fitted[case]
            values = {"combination_text": a, "combination_evidence": b, "combination_bias": c,
                      "loss_combined": float(losses[labelled.cpu() == bool(case)].mean())}
            for name, value in values.items():
                pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
