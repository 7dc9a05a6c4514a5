"""End-to-end with evidence on: fit logs both validation views and best-of-N, the index rides in the
checkpoint, and predict uses it plus the predict file's own answers, never the training files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mathverify.cli import cli_main

ROUNDS = "[{steps: 2}, {steps: 2, lr: 0.001}]"  # round 2 lowers the rate: not the evidence head's


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _scalars(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _predict(logs: Path, ckpt: Path, rows: Path, out: Path, *extra: str) -> dict[str, float]:
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", str(ckpt), "--data.predict_files", str(rows),
              "--submission", str(out / "sub.csv"), "--probabilities", str(out / "p.csv"),
              "--trainer.enable_progress_bar", "false", *extra])
    return {r["ID"]: float(r["p_true"]) for r in _read_csv(out / "p.csv")}


def test_fit_with_evidence_then_predict_from_the_saved_index(tmp_path, tiny_path):
    from mathverify.data.synthetic import write_rows

    logs, train = tmp_path / "logs", tmp_path / "train.csv"
    write_rows(train, 400, seed=0)
    cli_main([
        "fit", "--run_name", "ev", "--logs_dir", str(logs), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.callbacks+=callbacks.rounds.StepRounds", f"--trainer.callbacks.rounds={ROUNDS}",
        "--trainer.callbacks+=callbacks.metrics.VerificationMetrics",
        "--trainer.callbacks+=callbacks.selection.SelectionMetrics",
        "--trainer.callbacks+=callbacks.checkpoint.RoundCheckpoint",
        "--model.max_length", "256", "--model.lora_r", "4", "--model.evidence", "true", "--model.evidence_lr", "0.02",
        "--model.optimizer", "torch.optim.AdamW", "--model.optimizer.lr", "0.01",
        "--data.train_files", str(train), "--data.val_size", "40", "--data.val_scan_rows", "400",
        "--data.val_seen_size", "0.1", "--data.val_seen_max_rows", "20",
        "--data.batch_size", "4", "--data.eval_batch_size", "16", "--data.buffer_size", "32",
    ])
    run_dir = logs / "ev" / "version_0"
    scalars = _scalars(run_dir)
    for tag in ("val/acc", "val/loss", "val_seen/acc", "val_seen/loss", "val/select_acc", "val/vote_acc",
                "val/agreement_acc", "val/select_oracle"):
        assert len(scalars[tag]) == 2, tag  # one per round
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    from mathverify.evidence.index import INDEX_FORMAT

    saved = json.loads(state["VerifyDataModule"]["evidence_index"])
    assert saved["format"] == INDEX_FORMAT
    # the validation questions' labelled rows: out of fit's evidence, kept for predict
    assert saved["left_out"] and not set(saved["left_out"]) - set(saved["questions"]) == set()
    assert 0 < state["decision_threshold_seen"] < 1
    assert any(k.startswith("evidence_head.") for k in state["state_dict"])
    assert state["hyper_parameters"]["evidence"] is True
    names = [g["name"] for g in state["optimizer_states"][0]["param_groups"]]
    base = dict(zip(names, state["lr_schedulers"][0]["base_lrs"]))
    assert base["decay"] == pytest.approx(0.001) and base["evidence"] == pytest.approx(0.02)  # evidence_lr kept

    # predict never reads the training files: they are gone now.
    train.unlink()
    test_rows = tmp_path / "test.csv"
    write_rows(test_rows, 30, seed=9, test=True)
    together = _predict(logs, ckpt, test_rows, tmp_path, "--best_answers", str(tmp_path / "best.csv"))
    assert sorted(together, key=int) == [str(i) for i in range(30)]
    best = _read_csv(tmp_path / "best.csv")
    questions = {r["question"] for r in csv.DictReader(open(test_rows))}
    assert len(best) == len(questions) and sum(int(b["solutions"]) for b in best) == 30
    assert {b["question"] for b in best} == questions  # the question's text, not a digest
    # The first question's rows predicted alone: their own file holds fewer siblings, so P(True) moves.
    with open(test_rows, newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = [r for r in rows if r["question"] == rows[0]["question"]][:1]
    alone_file = tmp_path / "alone.csv"
    with open(alone_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(first)
    (tmp_path / "alone").mkdir()
    alone = _predict(logs, ckpt, alone_file, tmp_path / "alone")
    assert sum(r["question"] == rows[0]["question"] for r in rows) > 1  # seed 9 starts with a repeated question
    assert abs(alone["0"] - together["0"]) > 1e-7

    # export carries the head and the index, so a plain-transformers user can score the same way.
    export = tmp_path / "export"
    cli_main(["export", "--ckpt_path", str(ckpt), "--output", str(export)])
    meta = json.loads((export / "mathverify.json").read_text())
    assert meta["evidence"]["index"] == "evidence_index.json.gz"
    assert (export / "evidence_index.json.gz").is_file() and (export / "evidence_head.safetensors").is_file()
