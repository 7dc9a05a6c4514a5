"""Kaggle submission CSV (``ID,is_correct``) from ``predict_step`` outputs, in test row order."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from callbacks._decision import is_predicted_true
from mathverify.atomic import atomic_file
from mathverify.errors import SettingsError


@dataclass(frozen=True)
class PredictedRow:
    """One test row as a rank saw it: its position in the test file, its ID, P(is_correct=True) and
    whether its question has labelled siblings (which decision threshold it gets)."""

    row_index: int
    id: str
    p_true: float
    labelled: bool = False


class SubmissionWriter(BasePredictionWriter):
    """Writes the submission CSV (and optionally the probabilities) after ``trainer.predict``.

    Each rank appends its rows to ``<output>.part-rank<r>.jsonl`` batch by batch; after a barrier
    rank zero merges the parts, keeps one row per ``row_index``, checks rows 0..N-1 are all there,
    writes the CSV atomically and deletes the parts. A row is True when P(True) > threshold.
    """

    def __init__(
        self,
        output: str = "submission.csv",
        probabilities: str | None = None,
        threshold: float | None = None,
        overwrite: bool = False,
        best_answers: str | None = None,
    ) -> None:
        """
        Args:
            output: Path of the submission CSV (header ``ID,is_correct``, values True/False).
            probabilities: Optional path of a CSV ``ID,p_true`` with P(is_correct=True), 6 decimals.
            threshold: Predict True when P(True) is above this, for every row; None gives each row
                the module's threshold for its case (``threshold_seen`` where its question has
                labelled siblings, else ``threshold``).
            overwrite: Replace existing output files instead of refusing to start.
            best_answers: Optional path of a CSV with one row per question (best-of-N): the row with
                the highest P(True), ``question,solutions,ID,answer,p_true``.
        """
        super().__init__(write_interval="batch")
        if threshold is not None and not 0 < threshold < 1:  # 0 or 1 would make every row True or False
            raise SettingsError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        self.output = Path(output)
        self.probabilities = Path(probabilities) if probabilities is not None else None
        self.threshold = threshold
        self.overwrite = overwrite
        self.best_answers = Path(best_answers) if best_answers is not None else None
        self._part_file: TextIO | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        self._refuse_to_overwrite()  # before predicting: a long run must not end in a refusal
        self.output.parent.mkdir(parents=True, exist_ok=True)
        # "w" truncates: a part left behind by a crashed run must not leak rows into this one.
        self._part_file = self._part_path(trainer.global_rank).open("w", encoding="utf-8")

    def write_on_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, batch_indices: Sequence[int] | None,
        batch: Any, batch_idx: int, dataloader_idx: int,
    ) -> None:
        if self._part_file is None:
            raise RuntimeError("SubmissionWriter got predictions before setup(stage='predict')")
        for row in _rows_of(prediction):
            self._part_file.write(json.dumps(asdict(row)) + "\n")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_part()
        trainer.strategy.barrier()  # every part is complete on disk before rank zero reads them
        if trainer.is_global_zero:
            thresholds = ((self.threshold, self.threshold) if self.threshold is not None
                          else (float(pl_module.threshold), float(getattr(pl_module, "threshold_seen", pl_module.threshold))))
            rows = self._write_outputs(trainer.world_size, thresholds)
            if self.best_answers is not None:
                self._write_best_answers(rows, trainer.datamodule.predict_examples)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close_part()  # also reached when predicting failed

    def _refuse_to_overwrite(self) -> None:
        for path in (self.output, self.probabilities, self.best_answers):
            if path is not None and path.exists() and not self.overwrite:
                # SettingsError: the CLI prints it as one line, ``mathverify: error: ...``
                raise SettingsError(f"{path} already exists; add --overwrite true to replace it")

    def _part_path(self, rank: int) -> Path:
        return self.output.with_name(f"{self.output.name}.part-rank{rank}.jsonl")

    def _close_part(self) -> None:
        if self._part_file is not None:
            self._part_file.flush()
            os.fsync(self._part_file.fileno())
            self._part_file.close()
            self._part_file = None

    def _write_outputs(self, world_size: int, thresholds: tuple[float, float]) -> list[PredictedRow]:
        """``thresholds``: (rows without labelled siblings, rows with them)."""
        part_paths = [self._part_path(rank) for rank in range(world_size)]
        rows = merge_parts(part_paths)
        decisions = [bool(is_predicted_true(row.p_true, thresholds[row.labelled])) for row in rows]
        _write_csv_atomically(
            self.output, ("ID", "is_correct"), ((row.id, str(d)) for row, d in zip(rows, decisions))
        )
        if self.probabilities is not None:
            self.probabilities.parent.mkdir(parents=True, exist_ok=True)
            _write_csv_atomically(
                self.probabilities, ("ID", "p_true"), ((row.id, f"{row.p_true:.6f}") for row in rows)
            )
        for path in part_paths:
            path.unlink()  # only once the CSVs are safely in place
        share_true = sum(decisions) / len(decisions) if decisions else 0.0
        print(f"SubmissionWriter: wrote {len(rows)} rows, {share_true:.1%} predicted True, to {self.output}")
        return rows

    def _write_best_answers(self, rows: list[PredictedRow], examples: list[dict]) -> None:
        """One line per question (first-appearance order): its highest-P(True) row; a tie goes to the
        smaller answer key, as in validation's ``select_acc`` (content, not the order rows arrived in)."""
        from mathverify.evidence.selection import best_rows, group_rows

        digests = [examples[row.row_index]["digest"] for row in rows]
        keys = [examples[row.row_index]["answer_key"] for row in rows]
        best, sizes = best_rows([row.p_true for row in rows], digests, keys), group_rows(digests)
        self.best_answers.parent.mkdir(parents=True, exist_ok=True)
        _write_csv_atomically(self.best_answers, ("question", "solutions", "ID", "answer", "p_true"), (
            (examples[rows[i].row_index]["question"], len(sizes[digest]), rows[i].id, examples[rows[i].row_index]["answer"], f"{rows[i].p_true:.6f}")
            for digest, i in best.items()))
        print(f"SubmissionWriter: wrote the best answer of each of {len(best)} questions to {self.best_answers}")


def _rows_of(prediction: Any) -> list[PredictedRow]:
    """The rows of one ``predict_step`` output (dict with probs, row_index, ids)."""
    if not isinstance(prediction, Mapping) or not {"probs", "row_index", "ids"} <= prediction.keys():
        raise TypeError(
            "SubmissionWriter needs predict_step to return a dict with 'probs', 'row_index' and 'ids'; "
            f"got {type(prediction).__name__}"
        )
    probs = prediction["probs"].detach().float().reshape(-1).cpu().tolist()
    row_indices = prediction["row_index"].detach().reshape(-1).cpu().tolist()
    ids = [str(row_id) for row_id in prediction["ids"]]
    labelled = prediction.get("labelled")
    labelled = [False] * len(probs) if labelled is None else [bool(v) for v in labelled.reshape(-1).cpu().tolist()]
    if not len(probs) == len(row_indices) == len(ids) == len(labelled):
        raise ValueError(
            f"predict_step returned {len(probs)} probs, {len(row_indices)} row_index and {len(ids)} ids"
        )
    return [PredictedRow(int(i), row_id, p, flag) for i, row_id, p, flag in zip(row_indices, ids, probs, labelled)]


def merge_parts(part_paths: Iterable[Path]) -> list[PredictedRow]:
    """All rows of the parts, one per row_index, sorted by it.

    A row seen twice (e.g. a sampler padding the last batch) is kept once; a gap in 0..N-1, a
    missing part, or one row_index carrying two different IDs raises.
    """
    by_row_index: dict[int, PredictedRow] = {}
    for path in part_paths:
        if not path.exists():
            raise FileNotFoundError(f"prediction part {path} is missing (do all ranks share the output folder?)")
        with path.open(encoding="utf-8") as part:
            for line in part:
                row = PredictedRow(**json.loads(line))
                kept = by_row_index.setdefault(row.row_index, row)
                if kept.id != row.id:
                    raise ValueError(f"row_index {row.row_index} was predicted with two IDs: {kept.id!r}, {row.id!r}")
    _check_rows_complete(by_row_index.keys())
    return [by_row_index[row_index] for row_index in range(len(by_row_index))]


def _check_rows_complete(row_indices: Collection[int]) -> None:
    if not row_indices:
        return
    if min(row_indices) < 0:
        raise ValueError(f"predictions hold a negative row_index ({min(row_indices)})")
    last = max(row_indices)
    missing = sorted(set(range(last + 1)).difference(row_indices))
    if missing:
        raise ValueError(
            f"predictions miss {len(missing)} of the rows 0..{last}, e.g. row_index {missing[:5]}; "
            "refusing to write an incomplete submission"
        )


def _write_csv_atomically(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Readers never see half a CSV (``mathverify.atomic``)."""
    with atomic_file(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
