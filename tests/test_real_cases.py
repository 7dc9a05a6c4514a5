"""The real sets shipped in benchmarks/data: they are the split real_cases.py draws, every row reads,
and the cases the README's accuracy tables rest on come out as they did."""

from __future__ import annotations

import collections
import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_cases  # noqa: E402


@pytest.mark.parametrize("name", real_cases.SETS)
def test_the_shipped_files_are_the_unseen_seed_0_draw(name):
    """Each folder's train/test files hold exactly the rows, order and IDs that re-drawing from the
    original order gives: the demo's files and bench_real's default case are the same split."""
    shipped_train = real_cases.read_jsonl(real_cases.DATA / name / "train.jsonl.gz")
    shipped_test = real_cases.read_jsonl(real_cases.DATA / name / "test.jsonl.gz")
    rows = real_cases.original_rows(name)
    assert [r["source_row"] for r in rows] == list(range(len(rows)))  # no row lost or doubled
    train, test = real_cases.shipped_split(rows)
    assert shipped_train == train and shipped_test == test
    train_questions = {r["source_id"] for r in shipped_train}
    assert not train_questions & {r["source_id"] for r in shipped_test}
    assert [r["ID"] for r in shipped_test] == list(range(len(shipped_test)))
    assert all(r["solution"].endswith(f"The final answer is $\\boxed{{{r['answer']}}}$.") for r in rows)


def test_seen_cases_put_half_of_each_test_question_in_training(tmp_path):
    line = real_cases.write_case("gsm8k-gpt3", tmp_path, "seen", seed=3)
    train = list(csv.DictReader((tmp_path / "train.csv").open(encoding="utf-8")))
    test = list(csv.DictReader((tmp_path / "test.csv").open(encoding="utf-8")))
    labels = list(csv.DictReader((tmp_path / "test_labels.csv").open(encoding="utf-8")))
    assert [r["ID"] for r in test] == [r["ID"] for r in labels] and "is_correct" not in test[0]
    in_train, in_test = collections.Counter(r["question"] for r in train), collections.Counter(r["question"] for r in test)
    for question, n in in_test.items():
        assert in_train[question] == (n + in_train[question]) // 2  # the first half of the shuffled rows
    assert "known-label rule" in line and f"test rows {len(test)} of {len(in_test)} questions" in line


def test_the_demo_case_is_the_one_the_readme_reports():
    """The reference figures of gsm8k-gpt3 unseen (seed 0) as first drawn for the README's tables;
    a changed draw would silently move every number there."""
    train, test = real_cases.draw(real_cases.question_groups(real_cases.original_rows("gsm8k-gpt3")), "unseen", 0.6, 0)
    assert real_cases.reference_line("gsm8k-gpt3", "unseen", train, test) == (
        "gsm8k-gpt3 unseen: train rows 3019, test rows 1989 of 528 questions; test majority 0.5118, agreement rule 0.8457")


def test_score_names_a_submission_with_other_ids(tmp_path):
    real_cases.write_case("gsm8k-gpt3", tmp_path / "case")
    submission = tmp_path / "submission.csv"
    submission.write_text("ID,is_correct\n0,True\n")
    with pytest.raises(SystemExit, match="IDs differ"):
        real_cases.score(tmp_path / "case", submission)
    labels = (tmp_path / "case" / "test_labels.csv").read_text()
    submission.write_text(labels)
    assert real_cases.score(tmp_path / "case", submission).startswith("accuracy 1.0000 on 1989 rows")


@pytest.mark.parametrize("part", ["train", "test"])
def test_every_row_of_the_demo_set_reads_without_a_bad_row(part, capsys):
    from mathverify.data.check import main

    assert main([str(real_cases.DATA / "gsm8k-gpt3" / f"{part}.jsonl.gz")]) == 0
    assert "bad" not in capsys.readouterr().err


def test_the_pattern_rule_gives_each_test_row_its_patterns_training_rate(tmp_path):
    """bench_real's calibration floor: a test row's P is the training split's rate of right rows
    with the same agreement pattern in their own question (fallback: the training rate overall)."""
    import bench_real

    train = [  # q1: 2-1-1 votes, the pair right; q2: 2-1-1, the pair wrong; q3: 2-2, one pair right
        ("q1", "5", True), ("q1", "5", True), ("q1", "6", False), ("q1", "7", False),
        ("q2", "1", False), ("q2", "1", False), ("q2", "2", True), ("q2", "3", False),
        ("q3", "8", True), ("q3", "8", True), ("q3", "9", False), ("q3", "9", False),
    ]
    test = [("t1", "4"), ("t1", "4"), ("t1", "0"), ("t1", "3"), ("t2", "1"), ("t2", "2"), ("t2", "3")]
    for name, rows, columns in (("train.csv", train, ("question", "answer", "is_correct")),
                                ("test.csv", [(str(i), *r) for i, r in enumerate(test)], ("ID", "question", "answer"))):
        with (tmp_path / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
    reference = bench_real.rules(tmp_path)
    # t1's pair has pattern (1, (1, 1)): 4 training rows, 2 right; its singles (0, (2, 1)): 4 rows, 1 right.
    # t2's rows (0, (1, 1)) never occur in training: the overall rate, 5 of 12.
    assert reference["pattern"] == [0.5, 0.5, 0.25, 0.25, 5 / 12, 5 / 12, 5 / 12]
    assert reference["train_right"] == {0: 1 / 4, 1: 4 / 8}
    assert bench_real.ece([0.9, 0.9, 0.1, 0.1], [True, False, False, False]) == pytest.approx((0.4 * 2 + 0.1 * 2) / 4)
