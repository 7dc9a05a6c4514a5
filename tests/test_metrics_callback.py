"""VerificationMetrics on a tiny Trainer whose module returns fixed, hand-checkable outputs."""

from __future__ import annotations

import math
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.fabric.plugins.environments.lightning import find_free_network_port
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, Sampler, TensorDataset

from callbacks import VerificationMetrics
from mathverify.data.sharding import EpochRows

PROBS = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.7, 0.4]
LABELS = [1, 1, 1, 0, 0, 0, 0, 0]
# By hand at threshold 0.5: predictions 1,1,0,1,0,0,1,0 -> TP 2, FN 1, FP 2, TN 3.
# AUROC: of the 3 x 5 (positive, negative) pairs, 12 rank the positive higher.
EXPECTED_AT_HALF = {
    "acc": 5 / 8,
    "precision": 2 / 4,
    "recall": 2 / 3,
    "f1": 4 / 7,  # 2TP / (2TP + FP + FN)
    "auroc": 12 / 15,
    "majority_acc": 5 / 8,
    "pos_rate": 3 / 8,
    "pred_pos_rate": 4 / 8,
    # ECE, 10 bins: one row per bin (0.1 and 0.2 may share one, both labelled 0: the same sum),
    # |p - y| = .1 + .2 + .7 + .4 + .6 + .7 + .2 + .1 = 3.0 over 8 rows.
    "ece": 3.0 / 8,
}
METRIC_NAMES = set(EXPECTED_AT_HALF)


class FixedOutputsModule(pl.LightningModule):
    """Hands back the (probs, labels) of its batches as if it had predicted them."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.threshold = threshold
        self.rows = EpochRows()

    def training_step(self, batch, batch_idx):
        return (self.weight - 1.0).pow(2).sum()

    def on_validation_epoch_start(self):
        self.rows.reset()

    on_test_epoch_start = on_validation_epoch_start

    def epoch_outputs(self):
        return self.rows.gathered(self)

    def validation_step(self, batch, batch_idx):
        probs, labels = batch
        self.rows.add(probs=probs, labels=labels, view=torch.zeros_like(labels))
        return {"probs": probs, "labels": labels, "loss": torch.tensor(0.0)}

    test_step = validation_step

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(probs=PROBS, labels=LABELS) -> DataLoader:
    # batch_size 3 leaves a short last batch (3, 3, 2).
    return DataLoader(TensorDataset(torch.tensor(probs), torch.tensor(labels)), batch_size=3)


def make_trainer(callback: VerificationMetrics, logger, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=logger, callbacks=[callback], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, **({"devices": 1} | kwargs),
    )


def read_events(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_validate_logs_hand_computed_metrics():
    callback = VerificationMetrics()
    (logged,) = make_trainer(callback, logger=False).validate(FixedOutputsModule(), loader())

    assert {name: logged[f"val/{name}"] for name in METRIC_NAMES} == pytest.approx(EXPECTED_AT_HALF)
    assert callback.last_metrics == pytest.approx({f"val/{name}": v for name, v in EXPECTED_AT_HALF.items()})


def test_decision_threshold_is_read_from_the_module():
    # At 0.65 predictions are 1,1,0,0,0,0,1,0 -> TP 2, FN 1, FP 1, TN 4.
    metrics = VerificationMetrics(val_threshold=None)
    (logged,) = make_trainer(metrics, logger=False).validate(FixedOutputsModule(0.65), loader())

    assert logged["val/acc"] == pytest.approx(6 / 8)
    assert logged["val/precision"] == pytest.approx(2 / 3)
    assert logged["val/pred_pos_rate"] == pytest.approx(3 / 8)
    assert logged["val/auroc"] == pytest.approx(12 / 15)  # threshold-free


def test_test_run_writes_scalars_figures_and_pr_curve_to_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    make_trainer(VerificationMetrics(prefix_test="holdout"), logger).test(FixedOutputsModule(), loader())

    tags = read_events(logger.log_dir).Tags()
    assert {f"holdout/{name}" for name in METRIC_NAMES} <= set(tags["scalars"])
    assert {"holdout/confusion_matrix", "holdout/precision_recall_curve"} <= set(tags["images"])
    assert "holdout/pr_curve" in tags["tensors"]


def test_fit_ignores_sanity_check_and_logs_figures_at_global_step(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    callback = VerificationMetrics()
    trainer = make_trainer(
        callback, logger, max_epochs=1, limit_train_batches=2, num_sanity_val_steps=1, log_every_n_steps=1
    )
    trainer.fit(FixedOutputsModule(), train_dataloaders=loader(), val_dataloaders=loader())

    events = read_events(logger.log_dir)
    # One validation epoch after 2 steps; the sanity check (1 batch) must leave no trace.
    assert [event.step for event in events.Images("val/confusion_matrix")] == [2]
    assert [event.step for event in events.Tensors("val/pr_curve")] == [2]
    assert [event.value for event in events.Scalars("val/acc")] == pytest.approx([5 / 8])
    assert callback.last_metrics["val/f1"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("only_label", [0, 1])
def test_single_class_epoch_logs_nan_auroc_without_crashing(tmp_path, only_label):
    logger = TensorBoardLogger(tmp_path)
    labels = [only_label] * len(PROBS)
    (logged,) = make_trainer(VerificationMetrics(), logger).validate(FixedOutputsModule(), loader(labels=labels))

    assert math.isnan(logged["val/auroc"])
    assert logged["val/majority_acc"] == 1.0
    assert logged["val/pos_rate"] == float(only_label)
    assert logged["val/acc"] == pytest.approx(4 / 8)  # 4 of the 8 probs are above 0.5
    tags = read_events(logger.log_dir).Tags()
    assert "val/confusion_matrix" in tags["images"] and "val/pr_curve" in tags["tensors"]


def test_log_figures_false_writes_scalars_only(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    make_trainer(VerificationMetrics(log_figures=False), logger).validate(FixedOutputsModule(), loader())

    tags = read_events(logger.log_dir).Tags()
    assert "val/acc" in tags["scalars"]
    assert tags["images"] == [] and tags["tensors"] == []


class PlainModule(pl.LightningModule):
    """A module that does not collect its epoch's rows (no ``epoch_outputs``)."""

    threshold = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def validation_step(self, batch, batch_idx):
        return {"probs": batch[0], "labels": batch[1], "loss": torch.tensor(0.0)}


def test_module_without_epoch_outputs_fails_clearly():
    with pytest.raises(TypeError, match="epoch_outputs"):
        make_trainer(VerificationMetrics(), logger=False).validate(PlainModule(), loader())


class UnevenShardsSampler(Sampler):
    """Rank 0 reads rows 0-4 and rank 1 rows 5-7: shards of unequal size and no padding."""

    SHARDS = (range(0, 5), range(5, 8))

    def __iter__(self):
        return iter(self.SHARDS[torch.distributed.get_rank()])

    def __len__(self) -> int:
        return len(self.SHARDS[torch.distributed.get_rank()])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="ddp_fork needs os.fork")
def test_two_ranks_with_uneven_shards_give_the_single_process_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", str(find_free_network_port()))
    logger = TensorBoardLogger(tmp_path, version=0)  # fixed: the parent cannot see the version the ranks chose
    trainer = make_trainer(VerificationMetrics(), logger, devices=2, strategy="ddp_fork", use_distributed_sampler=False)
    data = TensorDataset(torch.tensor(PROBS), torch.tensor(LABELS))
    (logged,) = trainer.validate(FixedOutputsModule(), DataLoader(data, batch_size=3, sampler=UnevenShardsSampler()))

    assert {name: logged[f"val/{name}"] for name in METRIC_NAMES} == pytest.approx(EXPECTED_AT_HALF)
    # The PR curve's counts at the lowest threshold are all positives (TP) and all negatives (FP):
    # together they prove rank zero gathered all 8 rows of both shards.
    (pr_curve,) = read_events(logger.log_dir).Tensors("val/pr_curve")
    counts = torch.tensor(list(pr_curve.tensor_proto.float_val)).reshape(6, -1)
    assert (counts[0, 0].item(), counts[1, 0].item()) == (3, 5)
