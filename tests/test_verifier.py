"""mathverify.Verifier: the same P(True) as ``mathverify predict``, from a checkpoint or an export
folder; judge, best-of-N, rows as dicts / pandas / datasets, and one-line errors for bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mathverify.cli import cli_main
from mathverify.data.sources import DataError
from mathverify.verifier import Verifier, VerifierError


@pytest.fixture(scope="module")
def test_rows(tmp_path_factory):
    """Rows to predict, in the contest's test layout: 30 of new questions and 10 whose questions
    have labelled rows in training (both decision-threshold cases)."""
    from itertools import islice

    from mathverify.data.synthetic import generate_rows

    chosen = list(generate_rows(30, seed=5)) + list(islice(generate_rows(300, seed=0), 100, 300, 20))
    rows = [{"ID": str(i), "question": r["question"], "is_correct": "True", "answer": r["answer"],
             "solution": r["solution"]} for i, r in enumerate(chosen)]
    path = tmp_path_factory.mktemp("rows") / "test.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


def _predicted(logs: Path, ckpt: Path, rows_file: Path, out: Path) -> list[float]:
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", str(ckpt), "--data.predict_files", str(rows_file),
              "--submission", str(out / "sub.csv"), "--probabilities", str(out / "p.csv"),
              "--trainer.enable_progress_bar", "false"])
    with open(out / "p.csv", newline="") as handle:
        return [float(r["p_true"]) for r in csv.DictReader(handle)]


def test_score_matches_predict_from_a_checkpoint_and_an_export(evidence_run, test_rows, tmp_path):
    from mathverify.export import main as export_main

    logs, ckpt = evidence_run
    rows_file, rows = test_rows
    expected = torch.tensor(_predicted(logs, ckpt, rows_file, tmp_path), dtype=torch.float64)
    assert export_main(["--ckpt_path", str(ckpt), "--output", str(tmp_path / "export")]) == 0
    for source in (str(ckpt), "ver:last", tmp_path / "export"):
        verifier = Verifier.load(source, device="cpu", logs_dir=str(logs))
        got = torch.tensor(verifier.score(rows), dtype=torch.float64)
        # predict writes 6 decimals: |rounding| <= 5e-7
        assert torch.allclose(got, expected, atol=1e-6, rtol=0), (source, (got - expected).abs().max())
        assert verifier.index is not None and verifier.index.left_out == {}  # the complete index
        # the fitted combination rides along: with the identity (m + d) the scores differ
        weights = verifier.module.combination.as_list()
        assert weights == torch.load(ckpt, weights_only=True)["combination"] and weights[0] != [1.0, 1.0, 0.0]
        verifier.module.combination.load_list([[1.0, 1.0, 0.0]] * 2)
        assert not torch.allclose(torch.tensor(verifier.score(rows), dtype=torch.float64), expected, atol=1e-4, rtol=0)


def test_rows_as_pandas_and_datasets_score_the_same(evidence_run, test_rows):
    import datasets
    import pandas as pd

    logs, ckpt = evidence_run
    _, rows = test_rows
    verifier = Verifier.load(ckpt, device="cpu")
    base = verifier.score(rows)
    assert verifier.score(pd.DataFrame(rows)) == pytest.approx(base, abs=1e-7)
    assert verifier.score(datasets.Dataset.from_list(rows)) == pytest.approx(base, abs=1e-7)


def test_judge_applies_each_rows_stored_threshold(evidence_run, test_rows):
    logs, ckpt = evidence_run
    _, rows = test_rows
    verifier = Verifier.load(ckpt, device="cpu")
    low, seen = verifier.thresholds
    verifier.module.threshold, verifier.module.threshold_seen = 0.3, 0.7  # make the two cases differ
    scored = verifier._score(rows)
    assert verifier.judge(rows) == [p > (0.7 if known else 0.3) for p, known in scored]
    assert any(known for _, known in scored) and not all(known for _, known in scored)  # both cases occur


def test_best_of_n_scores_the_candidates_together(evidence_run):
    logs, ckpt = evidence_run
    verifier = Verifier.load(ckpt, device="cpu")
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    candidates = ["3 + 4 = 7. The answer is \\boxed{7}.", "3 * 4 = 12, so \\boxed{12}.",
                  "He has 3 + 4 = \\boxed{7} apples.", {"solution": "3 - 4 = -1", "answer": "-1"}]
    best = verifier.best_of_n(question, candidates)
    rows = [{"question": question, "solution": c, "answer": a}
            for c, a in zip(candidates[:3], ("7", "12", "7"))] + [{"question": question, **candidates[3]}]
    assert best.scores == pytest.approx(verifier.score(rows), abs=1e-7)
    assert best.score == max(best.scores) and best.scores[best.index] == best.score
    assert best.solution == rows[best.index]["solution"]
    with pytest.raises(DataError, match="no candidate solutions"):
        verifier.best_of_n(question, [])


def test_answer_defaults_to_the_last_boxed_content(evidence_run):
    logs, ckpt = evidence_run
    verifier = Verifier.load(ckpt, device="cpu")
    solution = "First \\boxed{3}, then 3 + 4 = \\boxed{\\frac{14}{2}}."
    given = verifier.score([{"question": "q?", "solution": solution, "answer": "\\frac{14}{2}"}])
    assert verifier.score([{"question": "q?", "solution": solution}]) == pytest.approx(given, abs=1e-7)
    assert verifier.score([{"question": "q?", "solution": solution, "answer": ""}]) == pytest.approx(given, abs=1e-7)


def test_bad_rows_and_paths_fail_in_one_line(evidence_run, tmp_path):
    logs, ckpt = evidence_run
    verifier = Verifier.load(ckpt, device="cpu")
    cases = [
        ([{"question": "q", "answer": "1", "solution": "s"}, {"question": "q", "answer": "2"}], r"rows: row 1, column solution: empty solution"),
        ([{"question": "q", "solution": "no box here"}], r"rows: row 0, column answer: empty answer"),
        ([], r"empty: nothing to score"),
        ({"question": "q", "solution": "s"}, r"not one dict"),
        (["just a string"], r"row 0: a str, not a dict"),
    ]
    for rows, message in cases:
        with pytest.raises(DataError, match=message) as err:
            verifier.score(rows)
        assert "\n" not in str(err.value)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, other)
    (tmp_path / "plain").mkdir()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "mathverify.json").write_text('{"base_model": "x", "threshold": 0.5}')
    for path, message in ((other, "not a mathverify checkpoint"), (tmp_path / "missing.ckpt", "does not exist"),
                          (tmp_path / "plain", "without mathverify.json"), (tmp_path / "old", "export the checkpoint again"),
                          ("nosuchrun:best", "no checkpoint found")):
        with pytest.raises(VerifierError, match=message) as err:
            Verifier.load(path, device="cpu", logs_dir=str(logs))
        assert "\n" not in str(err.value)


def test_top_level_import():
    import mathverify

    assert mathverify.Verifier is Verifier


def test_a_4bit_checkpoint_loads_quantized_and_scores_as_predict(tmp_path, tiny_path, test_rows):
    from mathverify.cli import cli_main
    from test_cli import _fit_args

    logs = tmp_path / "logs"
    cli_main(_fit_args(logs, "q4", "--model.quantization", "4bit", rounds="[{steps: 1}]"))
    ckpt = logs / "q4" / "version_0" / "checkpoints" / "last.ckpt"
    rows_file, rows = test_rows
    expected = _predicted(logs, ckpt, rows_file, tmp_path)
    verifier = Verifier.load(ckpt, device="cpu")
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in verifier.module.modules())  # quantized, as trained
    assert verifier.score(rows) == pytest.approx(expected, abs=1e-6)
