"""One ``fit`` run as one trial of an Optuna study: report at each round end, stop when pruned.

``mathverify sweep`` starts every trial as an ordinary ``fit`` subprocess and appends this callback
with the study's storage URL, study name and trial id. It is Optuna's own Lightning integration
(``optuna_integration.PyTorchLightningPruningCallback``) always taking its graceful path: the
objective is reported at every validation (one per round), the study's pruner decides, and a pruned
run stops at that round end like a finished one (checkpoints and TensorBoard events stay). The
worker that started the run reads the "pruned" mark from the trial and records the trial as PRUNED.
The trial's values go to TensorBoard's HParams tab, with the validation metrics as its columns.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

PRUNED_KEY = "ddp_pl:pruned"  # the integration's own system attribute (set on the graceful path)
METRICS_KEY = "metrics"  # user attribute: the last validation's val/* metrics
HPARAM_METRICS = ("val/loss", "val/acc", "val/f1", "val/auroc", "val/threshold_acc", "val/acc_tuned")
SQLITE_TIMEOUT_S = 120  # several processes share one SQLite file: wait for its lock, never fail


def open_storage(url: str, heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 retry_failed: int = 0):
    """An ``optuna.storages.RDBStorage`` (SQLite waits for its lock instead of failing).

    With ``heartbeat_interval``, trials whose worker stopped beating for ``grace_period`` seconds
    are failed by the next worker that looks, and re-queued up to ``retry_failed`` times.
    """
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retry_failed))
    return optuna.storages.RDBStorage(url, **kwargs)


def make_pruner(spec: Optional[dict]):
    """``{"name": "MedianPruner", **init_args}`` -> ``optuna.pruners.MedianPruner(**init_args)``; None: no pruning."""
    import optuna

    if not spec:
        return optuna.pruners.NopPruner()
    spec = dict(spec)
    name = spec.pop("name")
    pruner = getattr(optuna.pruners, name, None)
    if not isinstance(pruner, type) or not issubclass(pruner, optuna.pruners.BasePruner):
        raise ValueError(f"unknown pruner {name!r} (a class in optuna.pruners, e.g. MedianPruner)")
    return pruner(**spec)


class SweepPruning(PyTorchLightningPruningCallback):
    """Reports ``monitor`` to an Optuna trial at each validation and stops the run when it is pruned.

    Added by ``mathverify sweep`` to each trial's ``fit``; not meant for configs.

    Args:
        storage: the study's storage URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``).
        study_name: the study.
        trial_id: the storage's id of this run's trial (already RUNNING).
        monitor: the objective metric, e.g. ``val/loss``.
        pruner: the study's pruner, ``{"name": <class in optuna.pruners>, **init_args}``; None: never prune.
    """

    def __init__(self, storage: str, study_name: str, trial_id: int, monitor: str = "val/loss",
                 pruner: Optional[dict] = None) -> None:
        super().__init__(trial=None, monitor=monitor)  # the trial is opened in setup
        self.storage, self.study_name, self.trial_id, self.pruner = storage, study_name, trial_id, pruner

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        import optuna

        if self._trial is None:
            study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage),
                                      pruner=make_pruner(self.pruner))
            self._trial = optuna.Trial(study, self.trial_id)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The integration raises TrialPruned in a single process (a traceback, no clean shutdown);
        # its multi-process path stops every rank at the round end and marks the trial instead.
        self.is_ddp_backend = True
        if trainer.is_global_zero:
            self._trial.storage.set_trial_system_attr(self.trial_id, "ddp_pl:intermediate_value", {})
            self._log_hparams(trainer)

    @rank_zero_only
    def _log_hparams(self, trainer: Trainer) -> None:
        """The trial's values as an HParams session whose metric columns are the val/* scalars."""
        from torch.utils.tensorboard.summary import hparams

        writer = getattr(trainer.logger, "experiment", None)
        if writer is None or not hasattr(writer, "_get_file_writer"):
            return  # not TensorBoard
        frozen = self._trial.storage.get_trial(self.trial_id)
        values: dict[str, Any] = {"trial": frozen.number}
        for key, value in frozen.params.items():
            values[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in frozen.user_attrs.get("tied", {}).items():
            values[key] = value
        # hparams() only declares the metric columns; TensorBoard fills them from the logged scalars.
        for summary in hparams(values, {name: 0.0 for name in HPARAM_METRICS}):
            writer._get_file_writer().add_summary(summary)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
            metrics["round"] = trainer.current_epoch + 1
            self._trial.storage.set_trial_user_attr(self.trial_id, METRICS_KEY, metrics)
        if _last_validation(trainer):  # the run is done: pruning now would save nothing, only discard it
            value = trainer.callback_metrics.get(self.monitor)
            if trainer.is_global_zero and value is not None:
                self._trial.report(float(value), step=trainer.current_epoch)
            return
        super().on_validation_end(trainer, pl_module)  # reports; if pruned: stops all ranks, sets PRUNED_KEY


def _last_validation(trainer: Trainer) -> bool:
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
    max_steps = trainer.max_steps if trainer.max_steps not in (None, -1) else math.inf
    return trainer.current_epoch + 1 >= max_epochs or trainer.global_step >= max_steps
