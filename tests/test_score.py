"""``mathverify score``: every input row once, in input order, with predict's P(True); filtering;
resume after SIGKILL with no row lost or doubled; several processes; one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest

from mathverify.cli import cli_main
from mathverify.score import main as score_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    """240 rows in the contest's test layout: new questions and questions seen in training."""
    from mathverify.data.synthetic import generate_rows

    chosen = list(generate_rows(200, seed=7)) + list(islice(generate_rows(300, seed=0), 0, 300, 7))[:40]
    path = tmp_path_factory.mktemp("score") / "rows.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ID", "question", "is_correct", "answer", "solution"])
        writer.writeheader()
        for i, r in enumerate(chosen):
            writer.writerow({"ID": i, "question": r["question"], "is_correct": True, "answer": r["answer"],
                             "solution": r["solution"]})
    return path


def _read(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LIGHTNING_", "LOCAL_RANK", "WORLD_"))}
    env["MATHVERIFY_CACHE"] = os.environ["MATHVERIFY_CACHE"]
    env["PYTHONPATH"] = str(ROOT)
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_every_row_once_in_order_with_predicts_probabilities(evidence_run, rows_file, tmp_path, suffix):
    logs, ckpt = evidence_run
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", str(ckpt), "--data.predict_files", str(rows_file),
              "--submission", str(tmp_path / "sub.csv"), "--probabilities", str(tmp_path / "p.csv"),
              "--trainer.enable_progress_bar", "false"])
    with open(tmp_path / "p.csv", newline="") as handle:
        predicted = {r["ID"]: float(r["p_true"]) for r in csv.DictReader(handle)}
    with open(tmp_path / "sub.csv", newline="") as handle:
        decided = {r["ID"]: r["is_correct"] == "True" for r in csv.DictReader(handle)}
    out = tmp_path / f"scored{suffix}"
    assert score_main(["--model", str(ckpt), "--input", str(rows_file), "--output", str(out), "--chunk-rows", "64",
                       "--device", "cpu"]) == 0
    rows = _read(out)
    assert [str(r["ID"]) for r in rows] == [str(i) for i in range(240)]
    assert set(rows[0]) == {"ID", "question", "is_correct", "answer", "solution", "p_true", "is_correct_predicted"}
    for r in rows:  # chunks batch rows unlike predict's whole-file order: float noise only
        assert abs(r["p_true"] - predicted[str(r["ID"])]) < 2e-6
    assert sum(r["is_correct_predicted"] != decided[str(r["ID"])] for r in rows) == 0
    assert not out.with_name(out.name + ".parts").exists()


def test_keep_above_writes_only_rows_above_the_score(evidence_run, rows_file, tmp_path):
    _, ckpt = evidence_run
    every, kept = tmp_path / "all.jsonl", tmp_path / "kept.jsonl"
    score_main(["--model", str(ckpt), "--input", str(rows_file), "--output", str(every), "--device", "cpu"])
    scores = [r["p_true"] for r in _read(every)]
    # a cut between two neighbouring scores, clear of both: other chunks batch rows differently,
    # which moves a score by ~1e-7 (the resume tests' tolerance), so a cut equal to a score could flip
    ordered = sorted(scores)
    k = next(i for i in range(len(ordered) // 2, len(ordered) - 1) if ordered[i + 1] - ordered[i] > 1e-5)
    cut = (ordered[k] + ordered[k + 1]) / 2
    score_main(["--model", str(ckpt), "--input", str(rows_file), "--output", str(kept), "--keep-above", str(cut),
                "--device", "cpu", "--chunk-rows", "50"])
    got = _read(kept)
    assert [r["ID"] for r in got] == [r["ID"] for r in _read(every) if r["p_true"] > cut]
    assert 0 < len(got) < len(scores)


def test_resume_after_sigkill_loses_and_doubles_no_row(evidence_run, rows_file, tmp_path):
    _, ckpt = evidence_run
    out = tmp_path / "scored.jsonl"
    cmd = [sys.executable, "-m", "mathverify", "score", "--model", str(ckpt), "--input", str(rows_file),
           "--output", str(out), "--chunk-rows", "4", "--batch-size", "2", "--device", "cpu"]
    work = out.with_name(out.name + ".parts")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(work.glob("*.done"))) < 5 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(work.glob("*.done")))
    assert 5 <= done_before < 60 and not out.exists()
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {done_before} of 60 chunks already written" in again.stderr
    resumed = _read(out)
    assert [int(r["ID"]) for r in resumed] == list(range(240))  # none lost, none doubled, input order
    straight = tmp_path / "straight.jsonl"
    score_main(["--model", str(ckpt), "--input", str(rows_file), "--output", str(straight), "--chunk-rows", "4",
                "--batch-size", "2", "--device", "cpu"])
    assert [r["p_true"] for r in resumed] == pytest.approx([r["p_true"] for r in _read(straight)], abs=1e-7)


def test_two_processes_write_what_one_writes(evidence_run, rows_file, tmp_path):
    _, ckpt = evidence_run
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    base = [sys.executable, "-m", "mathverify", "score", "--model", str(ckpt), "--input", str(rows_file),
            "--chunk-rows", "32", "--device", "cpu"]
    for out, devices in ((one, "1"), (two, "2")):
        done = subprocess.run(base + ["--output", str(out), "--devices", devices], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 1: chunk" in done.stderr  # the second process scored chunks
    a, b = _read(one), _read(two)
    assert [r["ID"] for r in a] == [r["ID"] for r in b]
    assert [r["p_true"] for r in a] == pytest.approx([r["p_true"] for r in b], abs=1e-6)


def test_bad_input_and_refusals_are_one_line(evidence_run, tmp_path, write_csv, capsys):
    _, ckpt = evidence_run
    good = {"question": "What is 2 + 2?", "answer": "4", "solution": "2 + 2 = 4"}
    bad_file = write_csv([good, {**good, "solution": ""}, good], "bad.csv")
    with pytest.raises(SystemExit, match=r"score: error: .*bad\.csv: row 2, column solution: empty solution"):
        score_main(["--model", str(ckpt), "--input", bad_file, "--output", str(tmp_path / "o.jsonl")])
    out = tmp_path / "skip.jsonl"
    assert score_main(["--model", str(ckpt), "--input", bad_file, "--output", str(out), "--skip-bad",
                       "--device", "cpu"]) == 0
    assert len(_read(out)) == 2 and "1 bad, skipped" in capsys.readouterr().err
    assert "is_correct" in _read(out)[0]  # no labels in the input: the decision is is_correct
    with pytest.raises(SystemExit, match="already exists; pass --overwrite"):
        score_main(["--model", str(ckpt), "--input", bad_file, "--output", str(out), "--skip-bad"])
    with pytest.raises(SystemExit, match=r"score: error: .*missing\.csv"):
        score_main(["--model", str(ckpt), "--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "m.jsonl")])
    with pytest.raises(SystemExit, match=r"write \.parquet or \.jsonl"):
        score_main(["--model", str(ckpt), "--input", bad_file, "--output", str(tmp_path / "o.csv")])
    # an unfinished run over another input is refused, not mixed in
    unfinished = tmp_path / "u.jsonl"
    (tmp_path / "u.jsonl.parts").mkdir()
    (tmp_path / "u.jsonl.parts" / "state.json").write_text(json.dumps({"settings": {"input": ["other"]}}))
    with pytest.raises(SystemExit, match="unfinished run with other settings"):
        score_main(["--model", str(ckpt), "--input", bad_file, "--output", str(unfinished), "--skip-bad"])


def test_each_score_process_gets_its_own_device():
    from mathverify.score import process_device

    assert process_device(None, 0, 1, 0) == "cpu" and process_device(None, 0, 1, 2) == "cuda"
    # several processes on a GPU machine, --device not given: one GPU each, not all on cuda:0
    assert [process_device(None, rank, 2, 2) for rank in (0, 1)] == ["cuda:0", "cuda:1"]
    assert [process_device("cuda", rank, 3, 4) for rank in range(3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert process_device("cpu", 1, 2, 2) == "cpu"
    with pytest.raises(ValueError, match="--devices 3 on CUDA needs 3 GPUs; this machine has 2"):
        process_device("cuda", 0, 3, 2)
