"""``--model.head classifier`` end to end through the real CLI: trained, saved, resumed exactly,
exported, predicted, and loaded by ``Verifier`` with predict's numbers (DDP: tests/test_ddp.py)."""

from __future__ import annotations

import csv

import pytest
import torch

from mathverify.cli import cli_main
from mathverify.verifier import Verifier
from test_cli import _fit_args

ROUNDS = "[{steps: 2}, {steps: 2}]"


def _fit(logs, *extra, stop_after_each_round: bool = False):
    cli_main(_fit_args(logs, "clf", "--model.head", "classifier", *extra, rounds=ROUNDS,
                       stop_after_each_round=stop_after_each_round))
    return logs / "clf" / "version_0" / "checkpoints" / "last.ckpt"


def _head(ckpt) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {k: v for k, v in state["state_dict"].items() if k.startswith("head.")}


def test_classifier_head_trains_resumes_exports_and_predicts(tmp_path, tiny_path):
    from mathverify.data.synthetic import write_rows
    from mathverify.export import main as export_main

    straight = _fit(tmp_path / "a")
    head = _head(straight)
    assert head and all(v.abs().sum() > 0 for v in head.values())  # trained and saved with the adapter

    first = _fit(tmp_path / "b", stop_after_each_round=True)
    assert torch.load(first, weights_only=True)["global_step"] == 2
    resumed = _fit(tmp_path / "b", "--ckpt_path", "last")
    state = torch.load(resumed, weights_only=True)
    assert state["global_step"] == 4
    for key, value in _head(resumed).items():  # the resumed run ends where the straight one did
        assert torch.allclose(value, head[key], atol=1e-6), key

    rows = tmp_path / "test.csv"
    write_rows(rows, 24, seed=3, test=True)
    cli_main(["predict", "--logs_dir", str(tmp_path / "a"), "--ckpt_path", "clf:last", "--data.predict_files", str(rows),
              "--submission", str(tmp_path / "sub.csv"), "--probabilities", str(tmp_path / "p.csv"),
              "--trainer.enable_progress_bar", "false"])
    with open(tmp_path / "p.csv", newline="") as handle:
        predicted = [float(r["p_true"]) for r in csv.DictReader(handle)]
    assert len(predicted) == 24 and len(set(predicted)) > 1
    out = tmp_path / "export"
    assert export_main(["--ckpt_path", str(straight), "--output", str(out)]) == 0
    assert (out / "classifier_head.safetensors").is_file()
    with open(rows, newline="") as handle:
        test_rows = list(csv.DictReader(handle))
    for source in (straight, out):
        scores = Verifier.load(source, device="cpu").score(test_rows)
        assert scores == pytest.approx(predicted, abs=1e-6), source
