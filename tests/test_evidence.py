"""The evidence of other solutions: leave-one-out on hand-built rows, the index pass, save/load,
and predict through the CLI with the saved index (the predict file's own answers count too)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mathverify.data.index_pass import build_index
from mathverify.evidence.index import (
    FEATURES,
    EvidenceIndex,
    TrainingEvidence,
    eval_features,
    features,
    pool_of,
    row_key,
)
from mathverify.data.sources import resolve_parts
from mathverify.data.split import question_digest

F = {name: i for i, name in enumerate(FEATURES)}
Q1, Q2 = "How many apples does Tom have?", "What is 2 + 2?"
ROWS = [  # Q1: three solutions say 18 (two labelled correct, one incorrect: a noisy label), one says 26
    {"question": Q1, "answer": "18", "solution": "s1: 9 + 9 = 18 \\boxed{18}", "is_correct": "True"},
    {"question": Q1, "answer": "$18", "solution": "s2: 2 x 9 = 18 \\boxed{18}", "is_correct": "True"},
    {"question": Q1, "answer": "18.0", "solution": "s3: 20 - 2 = 18 \\boxed{18}", "is_correct": "False"},
    # flawed (evidence.checks): a wrong arithmetic step
    {"question": Q1, "answer": "26", "solution": "s4: 9 + 9 = 26 \\boxed{26}", "is_correct": "False"},
    {"question": Q2, "answer": "4", "solution": "t1: 2 + 2 = 4 \\boxed{4}", "is_correct": "True"},  # alone
]


def _write(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _counts_of(vector: list[float]) -> dict:
    """Back from features to the counts they encode (the log1p ones are exact integers)."""
    back = {name: round(math.expm1(vector[F[name]])) for name in FEATURES if name.startswith("log1p_")}
    return {**back, "no_siblings": vector[F["no_siblings"]], "no_labels": vector[F["no_labels"]]}


@pytest.fixture
def index(tmp_path) -> EvidenceIndex:
    built, held = build_index(resolve_parts(_write(tmp_path / "train.csv", ROWS)), lambda digest: False,
                              seen_size=0.0, seen_max_rows=0)
    assert held == []
    return built


def test_index_counts_votes_and_labels_by_canonical_answer(index):
    # [votes, correct, incorrect] of all rows, then of the flawed rows only
    assert index.counts(question_digest(Q1)) == {"18": [3, 2, 1, 0, 0, 0], "26": [1, 0, 1, 1, 0, 1]}
    assert index.counts(question_digest(Q2)) == {"4": [1, 1, 0, 0, 0, 0]}
    assert index.size() == {"questions": 2, "answers": 3, "rows": 5}


def test_training_row_never_sees_its_own_vote_or_label(index):
    shown = TrainingEvidence(index, seed=0, hide_labels=0.0, thin_siblings=0.0)
    q1 = question_digest(Q1)
    # Row 0 (18, correct): two other 18s (one correct, one incorrect), one 26 (incorrect).
    assert _counts_of(shown(q1, "18", 1, passes=0, row_index=0)) == {
        "log1p_same": 2, "log1p_other": 1, "log1p_known_correct_same": 1, "log1p_known_incorrect_same": 1,
        "log1p_known_correct_other": 0, "log1p_known_incorrect_other": 1, "log1p_unlabelled_same": 0,
        "log1p_unlabelled_other": 0, "no_siblings": 0.0, "no_labels": 0.0}
    # Row 2 (18, labelled incorrect): its own "incorrect" is gone, both correct labels remain.
    assert _counts_of(shown(q1, "18", 0, passes=0, row_index=2))["log1p_known_incorrect_same"] == 0
    assert _counts_of(shown(q1, "18", 0, passes=0, row_index=2))["log1p_known_correct_same"] == 2
    # Row 3 (26, flawed): nobody agrees; another answer is known correct twice; its own flaw is
    # its own feature, never a sibling's.
    vector = shown(q1, "26", 0, passes=0, row_index=3, flawed=True)
    assert _counts_of(vector)["log1p_same"] == 0 and _counts_of(vector)["log1p_known_correct_other"] == 2
    assert vector[F["same_is_0"]] == 1.0 and vector[F["own_flawed"]] == 1.0
    assert shown(q1, "18", 1, passes=0, row_index=0)[F["own_flawed"]] == 0.0
    # The lone row of Q2 sees nothing at all: not even its own label.
    alone = shown(question_digest(Q2), "4", 1, passes=0, row_index=4)
    assert alone == features({}, "4")
    assert alone[F["no_siblings"]] == 1.0 and alone[F["no_labels"]] == 1.0


def test_hidden_labels_and_thinned_siblings_are_seeded_per_row(index):
    q1 = question_digest(Q1)
    shown = TrainingEvidence(index, seed=3, hide_labels=0.5, thin_siblings=0.5)
    draws = [tuple(shown(q1, "18", 1, passes=p, row_index=r)) for p in range(2) for r in range(200)]
    assert draws == [tuple(shown(q1, "18", 1, passes=p, row_index=r)) for p in range(2) for r in range(200)]
    hidden = sum(d[F["no_labels"]] == 1.0 for d in draws) / len(draws)
    # Half the rows have their labels hidden; some thinned rows lose every labelled sibling too.
    assert 0.45 < hidden < 0.75
    assert len({d[F["log1p_same"]] for d in draws}) > 1  # siblings thinned for some rows
    never = TrainingEvidence(index, seed=3, hide_labels=0.0, thin_siblings=0.0)
    assert len({tuple(never(q1, "18", 1, passes=0, row_index=r)) for r in range(50)}) == 1  # nothing drawn


def test_evaluation_rows_count_their_file_but_not_themselves(index):
    q1, q3 = question_digest(Q1), question_digest("A new question")
    pool = pool_of([(q3, "7", True), (q3, "7", False), (q3, "8", False), (q1, "26", False)])
    # An unseen question: only the file's other rows, no labels.
    seven = _counts_of(eval_features(index, pool, q3, "7", own_in="pool"))
    assert seven["log1p_same"] == 1 and seven["log1p_other"] == 1 and seven["no_labels"] == 1.0
    # leave-one-out takes the row's own flawed count out with its vote (a flawed 7 and a clean 7)
    assert eval_features(index, pool, q3, "7", own_in="pool", flawed=True)[F["own_flawed"]] == 1.0
    assert pool.counts(q3)["7"] == [2, 0, 0, 1, 0, 0]
    from mathverify.evidence.index import without

    assert without(pool.counts(q3), "7", 1, 0, 0, flawed=True)["7"] == [1, 0, 0, 0, 0, 0]
    assert without(pool.counts(q3), "7", 1, 0, 0, flawed=False)["7"] == [1, 0, 0, 1, 0, 0]
    eight = eval_features(index, pool, q3, "8", own_in="pool")
    assert eight[F["same_is_0"]] == 1.0
    # A seen question: the index's votes and labels plus the file's other rows.
    seen = _counts_of(eval_features(index, pool, q1, "26", own_in="pool"))
    assert seen["log1p_same"] == 1 and seen["log1p_other"] == 3 and seen["log1p_known_correct_other"] == 2
    with pytest.raises(ValueError, match="leave-one-out"):
        eval_features(index, None, q3, "9", own_in="pool")  # a row that was never counted


def test_seen_view_holds_out_rows_of_questions_with_training_rows(tmp_path):
    rows = ROWS * 1 + [dict(r, solution=r["solution"] + f" v{i}") for i, r in enumerate(ROWS)]
    index, held = build_index(resolve_parts(_write(tmp_path / "t.csv", rows)), lambda d: False,
                              seen_size=1.0, seen_max_rows=3)
    assert len(held) == 3  # capped; every candidate's question has other rows here
    for _, _, raw, digest, key, rkey, label, _ in held:
        assert rkey == row_key(raw["question"], raw["answer"], raw["solution"])
        assert sum(c[0] for c in index.counts(digest).values()) > 1
    q1 = index.counts(question_digest(Q1))
    labelled = sum(c[1] + c[2] for c in q1.values())
    assert sum(c[0] for c in q1.values()) == 8 and labelled == 8 - 3  # held-out votes count, labels not


def test_lone_row_goes_back_to_training(tmp_path):
    index, held = build_index(resolve_parts(_write(tmp_path / "t.csv", ROWS[4:])), lambda d: False,
                              seen_size=1.0, seen_max_rows=10)
    assert held == [] and index.counts(question_digest(Q2)) == {"4": [1, 1, 0, 0, 0, 0]}


def test_validation_questions_stay_out_of_the_index(tmp_path):
    q1 = question_digest(Q1)
    index, _ = build_index(resolve_parts(_write(tmp_path / "t.csv", ROWS)), lambda d: d == q1, 0.0, 0)
    assert q1 not in index and question_digest(Q2) in index


def test_labels_fit_leaves_out_are_kept_for_prediction_only(tmp_path):
    """Validation questions' rows and the seen view's labels: out of fit's evidence, in predict's."""
    q1, q2 = question_digest(Q1), question_digest(Q2)
    rows = ROWS + [dict(ROWS[4], solution="t2: 2 * 2 = 4 \\boxed{4}"),
                   dict(ROWS[4], answer="5", solution="t3: 2 + 3 = 5", is_correct="False")]
    index, held = build_index(resolve_parts(_write(tmp_path / "t.csv", rows)), lambda d: d == q1, 1.0, 1)
    assert len(held) == 1 and held[0].digest == q2
    assert q1 not in index and index.left_out[q1] == {"18": [3, 2, 1, 0, 0, 0], "26": [1, 0, 1, 1, 0, 1]}
    assert sum(c[1] + c[2] for c in index.counts(q2).values()) == 2  # the held-out row's label is not there
    assert sum(c[0] for c in index.left_out[q2].values()) == 0  # ... only its label, its vote is counted
    complete = index.complete()
    assert complete.counts(q1) == {"18": [3, 2, 1, 0, 0, 0], "26": [1, 0, 1, 1, 0, 1]}
    assert sum(c[1] + c[2] for c in complete.counts(q2).values()) == 3 and complete.left_out == {}
    # A test row of the validation question: predict sees its labelled siblings, validation does not.
    pool = pool_of([(q1, "26", False)])
    at_predict = _counts_of(eval_features(complete, pool, q1, "26", own_in="pool"))
    at_validation = _counts_of(eval_features(index, pool, q1, "26", own_in="pool"))
    assert at_predict["log1p_known_correct_other"] == 2 and at_predict["no_labels"] == 0.0
    assert at_validation["no_labels"] == 1.0 and at_validation["log1p_same"] == 0
    back = EvidenceIndex.from_json(index.to_json())  # the checkpoint form keeps both parts
    assert back.questions == index.questions and back.left_out == index.left_out


def test_equal_answers_count_as_one_answer(tmp_path):
    q = "Simplify sqrt(18)."
    rows = [{"question": q, "answer": a, "solution": f"s{i}: so it is {a}.", "is_correct": c}
            for i, (a, c) in enumerate([("3\\sqrt{2}", "True"), ("\\sqrt{18}", "True"), ("3\\sqrt{2}", "True"), ("18", "False")])]
    index, _ = build_index(resolve_parts(_write(tmp_path / "t.csv", rows)), lambda d: False, 0.0, 0)
    digest = question_digest(q)
    assert index.aliases[digest] == {"\\sqrt{18}": "3\\sqrt{2}"}
    shown = TrainingEvidence(index, seed=0, hide_labels=0.0, thin_siblings=0.0)
    odd_one = shown(digest, "\\sqrt{18}", 1, passes=0, row_index=1)
    assert _counts_of(odd_one)["log1p_same"] == 2 and _counts_of(odd_one)["log1p_known_correct_same"] == 2
    assert odd_one[F["other_form"]] == 1.0  # written unlike its class's most voted spelling
    assert shown(digest, "3\\sqrt{2}", 1, passes=0, row_index=0)[F["other_form"]] == 0.0
    assert EvidenceIndex.from_json(index.to_json()).aliases == index.aliases
    # A predict file that brings a new spelling: its class is found at evaluation time.
    from mathverify.evidence.index import eval_aliases

    pool = pool_of([(digest, "\\frac{6}{\\sqrt{2}}", False)])
    aliases = eval_aliases(index, pool)
    assert aliases[digest]["\\frac{6}{\\sqrt{2}}"] == "3\\sqrt{2}"
    new = eval_features(index.complete(), pool, digest, "\\frac{6}{\\sqrt{2}}", own_in="pool", aliases=aliases[digest])
    assert _counts_of(new)["log1p_same"] == 3


def test_index_save_load_round_trip_is_json(tmp_path, index):
    path = tmp_path / "evidence_index.json.gz"
    index.save(path)
    assert EvidenceIndex.load(path).questions == index.questions
    assert EvidenceIndex.from_json(index.to_json()).questions == index.questions
    with pytest.raises(ValueError, match="not a mathverify evidence index"):
        EvidenceIndex.from_json('{"questions": {}}')
    with pytest.raises(ValueError, match="older mathverify.*run fit again"):  # format 2: no flawed counts
        EvidenceIndex.from_json('{"format": "mathverify-evidence-2", "questions": {}}')


def test_predict_without_a_saved_index_says_why():
    from mathverify.data.datamodule import VerifyDataModule
    from mathverify.errors import SettingsError

    dm = VerifyDataModule(evidence=True)
    example = {"digest": question_digest(Q2), "answer_key": "4", "own_in": "pool", "flawed": False}
    with pytest.raises(SettingsError, match="no evidence index.*--model.evidence false"):
        dm._attach_evidence([example], complete=True)
    VerifyDataModule(evidence=False)._attach_evidence([example], complete=True)  # evidence off: nothing needed
    assert "evidence" not in example


def test_a_checkpoint_of_an_older_evidence_head_is_refused_in_one_line():
    """Before the solution checks the head read 18 features: loading it must say so, not fail in
    load_state_dict with a shape dump."""
    import torch

    from mathverify.errors import SettingsError
    from mathverify.model.settings import check_evidence_width

    check_evidence_width({"evidence_head.net.0.weight": torch.zeros(32, len(FEATURES))})
    check_evidence_width({})  # no evidence head: nothing to check
    with pytest.raises(SettingsError, match="reads 18 features.*run fit again"):
        check_evidence_width({"evidence_head.net.0.weight": torch.zeros(32, 18)})
