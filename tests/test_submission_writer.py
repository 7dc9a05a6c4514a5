"""SubmissionWriter on a tiny Trainer whose module predicts fixed probabilities in shuffled row order."""

from __future__ import annotations

import csv
import json
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.plugins.environments.lightning import find_free_network_port
from torch.utils.data import DataLoader, Dataset

from callbacks import SubmissionWriter
from callbacks.submission import merge_parts

P_TRUE = [0.91, 0.2, 0.5, 0.734567891, 0.05, 0.6, 0.49]
IDS = [f"q{row}" for row in range(len(P_TRUE))]
# The loader serves rows out of file order; the submission must still follow row_index.
SERVED_ORDER = [4, 0, 6, 2, 5, 1, 3]


class ShuffledRows(Dataset):
    def __len__(self) -> int:
        return len(SERVED_ORDER)

    def __getitem__(self, position: int) -> dict:
        row = SERVED_ORDER[position]
        return {"row_index": row, "p_true": P_TRUE[row], "id": IDS[row]}


class FixedProbsModule(pl.LightningModule):
    """predict_step hands back the dataset's probabilities; counts batches to prove none ran."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.threshold = threshold
        self.predicted_batches = 0

    def predict_step(self, batch, batch_idx):
        self.predicted_batches += 1
        return {"probs": batch["p_true"].float(), "row_index": batch["row_index"], "ids": list(batch["id"])}


def predict(writer: SubmissionWriter, module: FixedProbsModule | None = None, **trainer_args) -> FixedProbsModule:
    module = module or FixedProbsModule()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, **({"devices": 1} | trainer_args),
    )
    trainer.predict(module, DataLoader(ShuffledRows(), batch_size=3), return_predictions=False)
    return module


def read_csv(path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_submission_lists_every_id_once_in_row_order(tmp_path, capsys):
    output = tmp_path / "out" / "nested" / "submission.csv"  # parent folders do not exist yet
    probabilities = tmp_path / "probs" / "p_true.csv"
    predict(SubmissionWriter(output=str(output), probabilities=str(probabilities)))

    # Strictly above 0.5 is True, so the row at exactly 0.5 is False.
    assert read_csv(output) == [
        ["ID", "is_correct"], ["q0", "True"], ["q1", "False"], ["q2", "False"], ["q3", "True"],
        ["q4", "False"], ["q5", "True"], ["q6", "False"],
    ]
    assert read_csv(probabilities) == [
        ["ID", "p_true"], ["q0", "0.910000"], ["q1", "0.200000"], ["q2", "0.500000"], ["q3", "0.734568"],
        ["q4", "0.050000"], ["q5", "0.600000"], ["q6", "0.490000"],
    ]
    assert sorted(path.name for path in output.parent.iterdir()) == ["submission.csv"]  # no parts, no temp
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"SubmissionWriter: wrote 7 rows, 42.9% predicted True, to {output}"
    )


@pytest.mark.parametrize(
    ("writer_threshold", "module_threshold", "expected_true"),
    [(None, 0.55, ["q0", "q3", "q5"]), (None, 0.45, ["q0", "q2", "q3", "q5", "q6"]), (0.7, 0.45, ["q0", "q3"])],
)
def test_threshold_defaults_to_the_module(tmp_path, writer_threshold, module_threshold, expected_true):
    output = tmp_path / "submission.csv"
    predict(SubmissionWriter(output=str(output), threshold=writer_threshold), FixedProbsModule(module_threshold))

    assert [row_id for row_id, value in read_csv(output)[1:] if value == "True"] == expected_true


class CaseAwareModule(FixedProbsModule):
    """Rows q0..q3 have labelled siblings (the seen case): they get ``threshold_seen``."""

    def __init__(self, threshold: float, threshold_seen: float) -> None:
        super().__init__(threshold)
        self.threshold_seen = threshold_seen

    def predict_step(self, batch, batch_idx):
        out = super().predict_step(batch, batch_idx)
        return {**out, "labelled": batch["row_index"] < 4}


@pytest.mark.parametrize(
    ("writer_threshold", "expected_true"),
    # P_TRUE 0.91, 0.2, 0.5, 0.73 (seen: > 0.8) | 0.05, 0.6, 0.49 (unseen: > 0.45)
    [(None, ["q0", "q5", "q6"]), (0.55, ["q0", "q3", "q5"])],
)
def test_each_row_gets_the_threshold_of_its_case(tmp_path, writer_threshold, expected_true):
    output = tmp_path / "submission.csv"
    predict(SubmissionWriter(output=str(output), threshold=writer_threshold), CaseAwareModule(0.45, 0.8))

    assert [row_id for row_id, value in read_csv(output)[1:] if value == "True"] == expected_true


@pytest.mark.parametrize("existing", ["submission.csv", "p_true.csv"])
def test_refuses_to_overwrite_before_predicting(tmp_path, existing):
    (tmp_path / existing).write_text("keep me\n")
    writer = SubmissionWriter(output=str(tmp_path / "submission.csv"), probabilities=str(tmp_path / "p_true.csv"))
    module = FixedProbsModule()

    from mathverify.cli import USER_ERRORS

    with pytest.raises(USER_ERRORS, match=rf"{existing} already exists; add --overwrite true to replace it$"):
        predict(writer, module)
    assert module.predicted_batches == 0
    assert (tmp_path / existing).read_text() == "keep me\n"


def test_overwrite_flag_replaces_existing_files(tmp_path):
    output, probabilities = tmp_path / "submission.csv", tmp_path / "p_true.csv"
    output.write_text("old\n")
    probabilities.write_text("old\n")
    predict(SubmissionWriter(output=str(output), probabilities=str(probabilities), overwrite=True))

    assert [row_id for row_id, _ in read_csv(output)[1:]] == IDS
    assert len(read_csv(probabilities)) == len(IDS) + 1


def test_stale_part_from_a_crashed_run_is_ignored(tmp_path):
    output = tmp_path / "submission.csv"
    stale = {"row_index": 99, "id": "stale", "p_true": 1.0}
    (tmp_path / "submission.csv.part-rank0.jsonl").write_text(json.dumps(stale) + "\n")
    predict(SubmissionWriter(output=str(output)))

    assert [row_id for row_id, _ in read_csv(output)[1:]] == IDS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="ddp_fork needs os.fork")
def test_two_ranks_merge_into_one_submission(tmp_path, monkeypatch):
    # 7 rows on 2 ranks: the DistributedSampler pads rank 1 with a repeat of one row.
    monkeypatch.setenv("MASTER_PORT", str(find_free_network_port()))
    output = tmp_path / "submission.csv"
    predict(SubmissionWriter(output=str(output)), devices=2, strategy="ddp_fork")

    assert [row_id for row_id, _ in read_csv(output)[1:]] == IDS
    assert [path.name for path in tmp_path.iterdir()] == ["submission.csv"]


def write_part(path, rows: list[tuple[int, str, float]]) -> None:
    path.write_text("".join(json.dumps({"row_index": i, "id": s, "p_true": p}) + "\n" for i, s, p in rows))


def test_merge_keeps_one_row_per_index_across_ranks(tmp_path):
    # Two ranks, interleaved like DistributedSampler, rank 1 repeating row 0 as sampler padding.
    write_part(tmp_path / "rank0", [(0, "a", 0.1), (2, "c", 0.3)])
    write_part(tmp_path / "rank1", [(1, "b", 0.2), (0, "a", 0.1)])

    rows = merge_parts([tmp_path / "rank0", tmp_path / "rank1"])
    assert [(row.row_index, row.id, row.p_true) for row in rows] == [(0, "a", 0.1), (1, "b", 0.2), (2, "c", 0.3)]


def test_merge_rejects_gaps_conflicts_and_missing_parts(tmp_path):
    write_part(tmp_path / "gap", [(0, "a", 0.1), (3, "d", 0.4)])
    with pytest.raises(ValueError, match=r"miss 2 of the rows 0..3, e.g. row_index \[1, 2\]"):
        merge_parts([tmp_path / "gap"])

    write_part(tmp_path / "conflict", [(0, "a", 0.1), (0, "z", 0.1)])
    with pytest.raises(ValueError, match="row_index 0 was predicted with two IDs"):
        merge_parts([tmp_path / "conflict"])

    with pytest.raises(FileNotFoundError, match="missing"):
        merge_parts([tmp_path / "nowhere"])


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_threshold_outside_0_1_is_refused(threshold):
    from mathverify.cli import USER_ERRORS

    with pytest.raises(USER_ERRORS, match=r"--threshold must be strictly between 0 and 1"):
        SubmissionWriter(threshold=threshold)


def test_best_answers_writes_each_questions_highest_p_row_and_breaks_ties_by_answer(tmp_path):
    from callbacks.submission import PredictedRow

    def example(question: str, answer: str) -> dict:
        return {"question": question, "digest": "d-" + question, "answer": answer, "answer_key": answer}

    examples = [example("A", "7"), example("A", "9"), example("B", "5"), example("A", "8"),
                example("B", "3"), example("C", "1")]
    p_true = [0.40, 0.85, 0.30, 0.60, 0.30, 0.10]  # A: row 1 is highest; B: rows 2 and 4 tie
    rows = [PredictedRow(row_index=i, id=f"id{i}", p_true=p) for i, p in enumerate(p_true)]
    writer = SubmissionWriter(output=str(tmp_path / "sub.csv"), best_answers=str(tmp_path / "best.csv"))
    for order in (rows, list(reversed(rows))):  # the order rows were gathered in must not matter
        writer._write_best_answers(order, examples)
        with open(tmp_path / "best.csv", newline="") as handle:
            best = {r["question"]: r for r in csv.DictReader(handle)}
        assert {q: (r["ID"], r["answer"], r["solutions"]) for q, r in best.items()} == {
            "A": ("id1", "9", "3"), "B": ("id4", "3", "2"), "C": ("id5", "1", "1")}  # tie: the smaller answer, 3
        assert float(best["A"]["p_true"]) == pytest.approx(0.85)
