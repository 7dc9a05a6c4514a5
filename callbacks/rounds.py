"""Step-limited training rounds, the seed's way of training, done with Lightning's own epochs.

One round is one Lightning epoch of exactly ``steps x accumulate`` micro-batches drawn from the
endless stream. So at each round end Lightning itself validates, then ModelCheckpoint saves (the
checkpoint holds that round's metrics), and the next round's loader is built with the next
round's micro-batch size. A killed or stopped run continues with ``fit --ckpt_path last``.
"""

from __future__ import annotations

import time
from typing import Optional, TypedDict

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from mathverify.errors import SettingsError
from mathverify.memory_advice import fitting_divisor


class Round(TypedDict, total=False):
    """One round: ``steps`` optimizer steps; optional overrides for this round."""

    steps: int
    accumulate: int
    batch_size: int
    lr: float


class StepRounds(Callback):
    """Runs training as a sequence of step-limited rounds.

    ``data.batch_size`` is the most rows a micro-batch may hold (the memory knob): a round whose
    ``batch_size`` is larger runs its micro-batch in pieces of the largest size that divides it and
    fits, and accumulates that many times more, so its rows per optimizer step stay as set
    (``--data.batch_size 1`` after an out-of-memory stop: 2 x 12 -> 1 x 24, still 24 rows per step).

    Args:
        rounds: one entry per round: ``steps`` (optimizer steps), and optionally ``accumulate``
            (gradient-accumulation micro-batches, default 1), ``batch_size`` (rows per micro-batch,
            default ``data.batch_size``; more than ``data.batch_size`` is split as said above),
            ``lr`` (peak learning rate from this round on; a parameter group marked ``own_lr``,
            like the evidence head's, keeps its rate).
        stop_after_each_round: end ``fit`` after every round; the next ``fit --ckpt_path last``
            continues with the following round.
    """

    def __init__(self, rounds: list[Round], stop_after_each_round: bool = False) -> None:
        if not rounds:
            raise ValueError("StepRounds needs at least one round")
        for i, r in enumerate(rounds, 1):
            if int(r.get("steps", 0)) < 1 or int(r.get("accumulate", 1)) < 1 or int(r.get("batch_size", 1)) < 1:
                raise ValueError(f"round {i}: steps, accumulate and batch_size must be >= 1, got {dict(r)}")
        self.rounds = [dict(r) for r in rounds]
        self.stop_after_each_round = stop_after_each_round
        self.history: list[dict] = []
        self._carried: dict[int, float] = {}  # round index -> seconds spent in it by earlier processes
        self._clock: Optional[tuple[int, float]] = None  # (round index, monotonic start) in this process
        self._rows_before: dict[int, int] = {}
        self._most_rows: Optional[int] = None  # data.batch_size: the most rows per micro-batch (setup)
        self._told: set[int] = set()  # rounds whose split was announced

    @property
    def total_steps(self) -> int:
        return sum(int(r["steps"]) for r in self.rounds)

    def round_of(self, epoch: int) -> dict:
        return self.rounds[min(epoch, len(self.rounds) - 1)]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "round_plan"):
            raise ValueError("StepRounds needs a datamodule with a round_plan attribute (VerifyDataModule)")
        datamodule.round_plan = self.plan
        self._most_rows = int(datamodule.hparams.batch_size)
        trainer.reload_dataloaders_every_n_epochs = 1  # each round's loader: its length and batch size
        if trainer.max_steps not in (-1, None, self.total_steps):
            raise SettingsError(
                f"--trainer.max_steps {trainer.max_steps} conflicts with the rounds ({len(self.rounds)} round(s), "
                f"{self.total_steps} steps), which set the run's length: change the rounds' steps, or drop max_steps"
            )
        trainer.fit_loop.epoch_loop.max_steps = self.total_steps
        trainer.fit_loop.max_epochs = len(self.rounds)

    def micro_batches(self, epoch: int) -> tuple[int, int]:
        """(rows per micro-batch, micro-batches per optimizer step) of round ``epoch`` as it runs:
        the round's own, or its micro-batch split to fit ``data.batch_size`` (same rows per step)."""
        r = self.round_of(epoch)
        most = self._most_rows or int(r.get("batch_size", 1))
        rows, accumulate = int(r.get("batch_size", most)), int(r.get("accumulate", 1))
        piece = fitting_divisor(rows, most)
        return piece, accumulate * (rows // piece)

    def plan(self, epoch: int) -> tuple[int, Optional[int]]:
        """(micro-batches in this epoch, micro-batch size) for the data module."""
        rows, accumulate = self.micro_batches(epoch)
        return int(self.round_of(epoch)["steps"]) * accumulate, rows

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run resumed inside a round gets no on_train_epoch_start from Lightning: set the round up here.
        self._enter_round(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._enter_round(trainer)

    def _enter_round(self, trainer: Trainer) -> None:
        """This round's accumulation and learning rate, and its clock (idempotent within a round)."""
        epoch = trainer.current_epoch
        r = self.round_of(epoch)
        rows, accumulate = self.micro_batches(epoch)
        trainer.accumulate_grad_batches = accumulate
        said = int(r.get("batch_size", rows))
        if said != rows and epoch not in self._told:
            self._told.add(epoch)
            rank_zero_info(f"round {epoch + 1}: micro-batch {said} x {r.get('accumulate', 1)} runs as {rows} x {accumulate} "
                           f"(data.batch_size {self._most_rows}): {rows * accumulate} rows per step, as set")
        if r.get("lr") is not None:
            for config in trainer.lr_scheduler_configs:
                scheduler = config.scheduler
                # Every group takes the round's rate except one marked ``own_lr`` (the evidence head's).
                groups = scheduler.optimizer.param_groups
                scheduler.base_lrs = [base if group.get("own_lr") else float(r["lr"])
                                      for group, base in zip(groups, scheduler.base_lrs)]
                for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_lr()):
                    group["lr"] = lr
        if self._clock is None or self._clock[0] != epoch:
            if self._clock is not None:
                self._carried[self._clock[0]] = self.seconds_in(self._clock[0])
            self._clock = (epoch, time.monotonic())
        self._rows_before.setdefault(epoch, _rows_seen(trainer))  # kept from the checkpoint on a resume

    def seconds_in(self, epoch: int) -> float:
        """Wall time spent in round ``epoch`` (0-based), summed over this process and earlier ones."""
        running = time.monotonic() - self._clock[1] if self._clock is not None and self._clock[0] == epoch else 0.0
        return self._carried.get(epoch, 0.0) + running

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        epoch = trainer.current_epoch
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.history = [h for h in self.history if h["round"] != epoch + 1]
        self.history.append({
            "round": epoch + 1, "steps": trainer.global_step, "rows": _rows_seen(trainer) - self._rows_before[epoch],
            "acc": metrics.get("val/acc", float("nan")), "f1": metrics.get("val/f1", float("nan")),
            "loss": metrics.get("val/loss", float("nan")), "seconds": self.seconds_in(epoch),
        })

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last_round = trainer.current_epoch + 1 >= len(self.rounds)
        if self.stop_after_each_round and not last_round:
            trainer.should_stop = True
            rank_zero_info(f"round {trainer.current_epoch + 1} done; continue with: fit ... --ckpt_path last")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.history:
            rank_zero_info(format_table(self.history))

    def state_dict(self) -> dict:
        rounds = set(self._carried) | ({self._clock[0]} if self._clock is not None else set())
        return {"history": self.history, "seconds": {e: self.seconds_in(e) for e in rounds},
                "rows_before": dict(self._rows_before),
                "micro_batches": {e: list(self.micro_batches(e)) for e in rounds}}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """A checkpoint written at a round's end resumes at the start of the next round.

        Lightning restores such a state (epoch processed, not completed, its last batch done) as
        "restarted on the epoch's end" and, in step-bounded training, then counts the next epoch
        as processed without running a batch: the run ended at once with ``max_epochs`` reached.
        Marking the epoch completed (the loops are restored after the callbacks) starts the next
        round from its first batch, as an uninterrupted run does."""
        loop = checkpoint.get("loops", {}).get("fit_loop")
        if not loop or "epoch_progress" not in loop or "epoch_loop.batch_progress" not in loop:
            return
        epochs, batches = loop["epoch_progress"], loop["epoch_loop.batch_progress"]
        current = epochs["current"]
        round_end = batches.get("is_last_batch") and current["processed"] == current["completed"] + 1
        if not round_end:
            self._check_same_micro_batches(checkpoint, int(checkpoint.get("epoch", current["processed"])))
        if round_end:
            for progress in (epochs["total"], epochs["current"]):
                progress["completed"] = progress["processed"]
            batches["current"] = {key: 0 for key in batches["current"]}
            batches["is_last_batch"] = False

    def _check_same_micro_batches(self, checkpoint: dict, epoch: int) -> None:
        """A run stopped inside a round resumes only with the micro-batches it ran with: Lightning
        counts the round's progress in micro-batches (a new split would replay or skip rows)."""
        state = checkpoint.get("callbacks", {}).get(self.state_key, {})
        saved = state.get("micro_batches", {}).get(epoch)  # None: older checkpoints, not checked
        now = self.micro_batches(epoch)
        if saved is not None and tuple(saved) != now:
            raise SettingsError(
                f"the checkpoint stopped inside round {epoch + 1}, which ran {saved[0]} x {saved[1]} micro-batches; "
                f"now {now[0]} x {now[1]} (data.batch_size {self._most_rows}): resume with --data.batch_size "
                f"{saved[0]}, or from a checkpoint written at a round's end")

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self._carried = {int(e): float(s) for e, s in state_dict.get("seconds", {}).items()}
        self._rows_before = {int(e): int(r) for e, r in state_dict.get("rows_before", {}).items()}


def _rows_seen(trainer: Trainer) -> int:
    stats = getattr(trainer.datamodule, "stats", None) or {}
    return int(stats.get("rows_seen", 0))


def format_table(history: list[dict]) -> str:
    head = f"{'round':>5} {'step':>7} {'rows':>9} {'val/acc':>8} {'val/f1':>7} {'val/loss':>8} {'time':>8}"
    lines = [head]
    for h in history:
        lines.append(f"{h['round']:>5} {h['steps']:>7} {h['rows']:>9} {h['acc']:>8.4f} {h['f1']:>7.4f} "
                     f"{h['loss']:>8.4f} {h['seconds']:>7.0f}s")
    return "\n".join(lines)
