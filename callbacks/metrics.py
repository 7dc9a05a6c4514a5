"""Binary verification metrics for validation and test, logged as scalars and TensorBoard figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    BinaryF1Score,
    BinaryPrecision,
    BinaryPrecisionRecallCurve,
    BinaryRecall,
)

from callbacks._decision import is_predicted_true

# A binned curve keeps constant memory however large the split; 101 points is plenty for a plot.
PR_CURVE_THRESHOLDS = 101


class VerificationMetrics(Callback):
    """Accuracy, F1, precision, recall, AUROC and baselines of the is_correct prediction.

    Reads the ``probs`` / ``labels`` that ``validation_step`` and ``test_step`` return and the
    module's ``threshold``. Logs ``<prefix>/{acc,f1,precision,recall,auroc,majority_acc,pos_rate,
    pred_pos_rate}`` once per epoch; AUROC is NaN when the epoch holds a single class. The latest
    values stay readable in ``last_metrics`` (keys with the prefix, e.g. ``"val/acc"``).
    """

    def __init__(self, prefix_val: str = "val", prefix_test: str = "test", log_figures: bool = True,
                 val_threshold: float | None = 0.5) -> None:
        """
        Args:
            prefix_val: Prefix of the metric names logged after each validation epoch.
            prefix_test: Prefix of the metric names logged after testing.
            log_figures: With a TensorBoardLogger, also add the confusion matrix and the
                precision-recall curve (as figures and as a native TensorBoard PR curve).
            val_threshold: Decision threshold for the validation scores; None uses the module's.
                Fixed at 0.5 by default, so ``val/acc`` is never tuned on the rows it scores
                (``callbacks.threshold.DecisionThreshold`` logs the tuned, in-sample value).
                Test always uses the module's threshold.
        """
        super().__init__()
        self.prefix_val = prefix_val
        self.prefix_test = prefix_test
        self.log_figures = log_figures
        self.val_threshold = val_threshold
        self.last_metrics: dict[str, float] = {}
        # Accuracy..recall share one stat-scores state inside the collection (compute groups).
        self._decision_metrics = MetricCollection(
            {"acc": BinaryAccuracy(), "f1": BinaryF1Score(), "precision": BinaryPrecision(), "recall": BinaryRecall()}
        )
        self._auroc = BinaryAUROC()
        self._confusion = BinaryConfusionMatrix()
        self._pr_curve = BinaryPrecisionRecallCurve(thresholds=PR_CURVE_THRESHOLDS)
        self._label_pos_rate = MeanMetric()
        self._pred_pos_rate = MeanMetric()
        self._batches_seen = 0
        # Raw epoch outputs, only kept when figures are logged (TensorBoard's PR curve needs them).
        self._epoch_probs: list[Tensor] = []
        self._epoch_labels: list[Tensor] = []

    # Lightning hooks ---------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_epoch(pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_epoch(pl_module)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:  # the sanity check sees a couple of batches: not a real score
            threshold = self.val_threshold if self.val_threshold is not None else pl_module.threshold
            self._update(trainer, pl_module, outputs, threshold)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(trainer, pl_module, outputs, pl_module.threshold)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish_epoch(trainer, pl_module, self.prefix_val)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_epoch(trainer, pl_module, self.prefix_test)

    # Epoch life cycle --------------------------------------------------------------------------

    def _all_metrics(self) -> list[torch.nn.Module]:
        return [self._decision_metrics, self._auroc, self._confusion, self._pr_curve,
                self._label_pos_rate, self._pred_pos_rate]

    def _start_epoch(self, pl_module: pl.LightningModule) -> None:
        # The callback owns the metrics, so Lightning does not move them: follow the module.
        for metric in self._all_metrics():
            metric.to(pl_module.device)
            metric.reset()
        self._batches_seen = 0
        self._epoch_probs.clear()
        self._epoch_labels.clear()

    def _update(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, threshold: float) -> None:
        if not isinstance(outputs, Mapping) or "probs" not in outputs or "labels" not in outputs:
            raise TypeError(
                "VerificationMetrics needs validation_step/test_step to return a dict with 'probs' and "
                f"'labels'; got {type(outputs).__name__}"
            )
        probs = outputs["probs"].detach().float().reshape(-1)
        labels = outputs["labels"].detach().long().reshape(-1)
        # Binarise here (not inside torchmetrics) so a threshold tuned on the module applies at once.
        preds = is_predicted_true(probs, float(threshold)).long()
        self._decision_metrics.update(preds, labels)
        self._confusion.update(preds, labels)
        self._auroc.update(probs, labels)
        self._pr_curve.update(probs, labels)
        self._label_pos_rate.update(labels.float())
        self._pred_pos_rate.update(preds.float())
        if self._figures_wanted(trainer):
            self._epoch_probs.append(probs)
            self._epoch_labels.append(labels)
        self._batches_seen += 1

    def _finish_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        if self._batches_seen == 0:
            return
        # compute() already reduces across DDP ranks, so every rank logs the same global value.
        values = self._compute_scalars()
        for name, value in values.items():
            pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
        self.last_metrics.update({f"{prefix}/{name}": value for name, value in values.items()})
        if self._figures_wanted(trainer):
            self._log_figures(trainer, pl_module, prefix, pos_rate=values["pos_rate"])

    def _compute_scalars(self) -> dict[str, float]:
        values = {name: float(value) for name, value in self._decision_metrics.compute().items()}
        pos_rate = float(self._label_pos_rate.compute())
        # AUROC is undefined with a single class. pos_rate is already global, so all ranks agree
        # on skipping the (collective) AUROC compute.
        values["auroc"] = float(self._auroc.compute()) if 0.0 < pos_rate < 1.0 else math.nan
        values["majority_acc"] = max(pos_rate, 1.0 - pos_rate)
        values["pos_rate"] = pos_rate
        values["pred_pos_rate"] = float(self._pred_pos_rate.compute())
        return values

    # Figures -----------------------------------------------------------------------------------

    def _figures_wanted(self, trainer: pl.Trainer) -> bool:
        return self.log_figures and _tensorboard_logger(trainer) is not None

    def _log_figures(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str, pos_rate: float) -> None:
        # Collective calls first, on every rank; only rank zero writes.
        probs = gather_uneven(pl_module, torch.cat(self._epoch_probs))
        labels = gather_uneven(pl_module, torch.cat(self._epoch_labels))
        confusion = self._confusion.compute().cpu()
        precision, recall, _ = self._pr_curve.compute()
        if not trainer.is_global_zero:
            return
        writer = _tensorboard_logger(trainer).experiment
        step = trainer.global_step
        writer.add_figure(f"{prefix}/confusion_matrix", _confusion_figure(confusion), step, close=True)
        writer.add_figure(
            f"{prefix}/precision_recall_curve",
            _precision_recall_figure(precision.cpu(), recall.cpu(), pos_rate), step, close=True,
        )
        writer.add_pr_curve(f"{prefix}/pr_curve", labels.cpu(), probs.cpu(), step)


def _tensorboard_logger(trainer: pl.Trainer) -> TensorBoardLogger | None:
    return next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)


def gather_uneven(pl_module: pl.LightningModule, local: Tensor) -> Tensor:
    """Concatenate a 1-D tensor over all ranks. Every rank must call this.

    ``all_gather`` needs equal shapes; ranks can hold different row counts (custom samplers), so
    pad to the longest and trim back.
    """
    if pl_module.trainer.world_size == 1:
        return local
    sizes = pl_module.all_gather(torch.tensor([local.numel()], device=local.device)).reshape(-1)
    padded = torch.zeros(int(sizes.max()), dtype=local.dtype, device=local.device)
    padded[: local.numel()] = local
    gathered = pl_module.all_gather(padded)  # [world_size, longest]
    return torch.cat([rank_rows[: int(size)] for rank_rows, size in zip(gathered, sizes)])


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
