"""Binary verification metrics for validation and test, logged as scalars and TensorBoard figures."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_calibration_error,
    binary_confusion_matrix,
    binary_f1_score,
    binary_precision,
    binary_precision_recall_curve,
    binary_recall,
)

from callbacks._decision import is_predicted_true

# A binned curve keeps constant memory however large the split; 101 points is plenty for a plot.
PR_CURVE_THRESHOLDS = 101


class VerificationMetrics(Callback):
    """Accuracy, F1, precision, recall, AUROC and baselines of the is_correct prediction.

    Reads every rank's validation/test rows from ``VerifierModule.epoch_outputs()`` (gathered once
    per epoch and shared with the other callbacks) and the module's ``threshold``. Logs
    ``<prefix>/{acc,f1,precision,recall,auroc,ece,majority_acc,pos_rate,pred_pos_rate}`` once per
    epoch for each view of the rows: validation questions not in training (``val/``) and held-out
    rows of training questions (``val_seen/``). AUROC is NaN when a view holds a single class. The
    latest values stay readable in ``last_metrics`` (keys with the prefix, e.g. ``"val/acc"``).
    """

    def __init__(self, prefix_val: str = "val", prefix_test: str = "test", log_figures: bool = True,
                 val_threshold: float | None = 0.5) -> None:
        """
        Args:
            prefix_val: Prefix of the metric names logged after each validation epoch (the seen
                view gets ``<prefix_val>_seen``).
            prefix_test: Prefix of the metric names logged after testing.
            log_figures: With a TensorBoardLogger, also add the confusion matrix and the
                precision-recall curve (as figures and as a native TensorBoard PR curve).
            val_threshold: Decision threshold for the validation scores; None uses the module's.
                Fixed at 0.5 by default, so ``val/acc`` is never tuned on the rows it scores
                (``callbacks.threshold.DecisionThreshold`` logs the tuned, in-sample value).
                Test always uses the module's thresholds, each row the one of its case.
        """
        super().__init__()
        self.prefix_val = prefix_val
        self.prefix_test = prefix_test
        self.log_figures = log_figures
        self.val_threshold = val_threshold
        self.last_metrics: dict[str, float] = {}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check sees a couple of batches: not a real score
            self._finish_epoch(trainer, pl_module, (self.prefix_val, f"{self.prefix_val}_seen"), self.val_threshold)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_epoch(trainer, pl_module, (self.prefix_test,), None)

    def _finish_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefixes: tuple[str, ...],
                      threshold: float | None) -> None:
        """``threshold`` None: each row the module's threshold for its case (``decision_thresholds``)."""
        rows = _checked_outputs(pl_module)
        for view, prefix in enumerate(prefixes):
            mine = rows["view"] == view
            if not bool(mine.any()):
                continue
            probs, labels = rows["probs"][mine].float(), rows["labels"][mine].long()
            cut = _module_thresholds(pl_module, rows, mine) if threshold is None else float(threshold)
            values = scalar_metrics(probs, labels, cut)
            for name, value in values.items():  # the same on every rank: the rows are gathered
                pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
            self.last_metrics.update({f"{prefix}/{name}": value for name, value in values.items()})
            if self.log_figures and trainer.is_global_zero and _tensorboard_logger(trainer) is not None:
                _log_figures(trainer, prefix, probs, labels, cut, values["pos_rate"])


def _checked_outputs(pl_module: pl.LightningModule) -> dict[str, Tensor]:
    if not hasattr(pl_module, "epoch_outputs"):
        raise TypeError("VerificationMetrics needs a module with epoch_outputs() (mathverify.model.module.VerifierModule)")
    return pl_module.epoch_outputs()


def _module_thresholds(pl_module: pl.LightningModule, rows: dict[str, Tensor], mine: Tensor) -> float | Tensor:
    """The module's threshold of each row's case (``VerifierModule.decision_thresholds``), or its one threshold."""
    if "labelled" in rows and hasattr(pl_module, "decision_thresholds"):
        return pl_module.decision_thresholds(rows["labelled"][mine])
    return float(pl_module.threshold)


def scalar_metrics(probs: Tensor, labels: Tensor, threshold: float | Tensor) -> dict[str, float]:
    """Decision metrics at ``threshold`` (one, or one per row), AUROC and the label/prediction rates."""
    # Binarise here (not inside torchmetrics) so the submission's rule applies: P(True) > threshold.
    preds = is_predicted_true(probs, threshold).long()
    values = {"acc": float(binary_accuracy(preds, labels)), "f1": float(binary_f1_score(preds, labels)),
              "precision": float(binary_precision(preds, labels)), "recall": float(binary_recall(preds, labels))}
    pos_rate = float(labels.float().mean())
    values["auroc"] = float(binary_auroc(probs, labels)) if 0.0 < pos_rate < 1.0 else math.nan
    # Reliability: |mean P(True) - share True| over 10 equal-width bins, weighted by rows (ECE).
    values["ece"] = float(binary_calibration_error(probs, labels, n_bins=10, norm="l1"))
    values["majority_acc"] = max(pos_rate, 1.0 - pos_rate)
    values["pos_rate"] = pos_rate
    values["pred_pos_rate"] = float(preds.float().mean())
    return values


def _log_figures(trainer: pl.Trainer, prefix: str, probs: Tensor, labels: Tensor, threshold: float | Tensor,
                 pos_rate: float) -> None:
    writer = _tensorboard_logger(trainer).experiment
    step = trainer.global_step
    confusion = binary_confusion_matrix(is_predicted_true(probs, threshold).long(), labels)
    precision, recall, _ = binary_precision_recall_curve(probs, labels, thresholds=PR_CURVE_THRESHOLDS)
    writer.add_figure(f"{prefix}/confusion_matrix", _confusion_figure(confusion), step, close=True)
    writer.add_figure(f"{prefix}/precision_recall_curve", _precision_recall_figure(precision, recall, pos_rate),
                      step, close=True)
    writer.add_pr_curve(f"{prefix}/pr_curve", labels, probs, step)


def _tensorboard_logger(trainer: pl.Trainer) -> TensorBoardLogger | None:
    return next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)


def _confusion_figure(confusion: Tensor) -> Figure:
    """Counts with rows = true label and columns = prediction (torchmetrics' layout)."""
    counts = confusion.numpy()
    # A bare Figure (not pyplot) keeps no global state, so nothing leaks between epochs.
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks([0, 1], ["False", "True"])
    axes.set_yticks([0, 1], ["False", "True"])
    axes.set(xlabel="predicted is_correct", ylabel="true is_correct", title="confusion matrix")
    for (row, col), count in np.ndenumerate(counts):
        dark_cell = count > counts.max() / 2
        axes.text(col, row, str(count), ha="center", va="center", color="white" if dark_cell else "black")
    figure.tight_layout()
    return figure


def _precision_recall_figure(precision: Tensor, recall: Tensor, pos_rate: float) -> Figure:
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.plot(recall.numpy(), precision.numpy(), label="model")
    # A classifier without skill sits at precision = share of positives.
    axes.axhline(pos_rate, linestyle="--", color="grey", label=f"no skill ({pos_rate:.2f})")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
    axes.legend(loc="lower left")
    figure.tight_layout()
    return figure
