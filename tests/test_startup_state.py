"""A resumed fit takes its start-up state (validation rows and rule, the seen view, the evidence
index) from the checkpoint: no pass over the training files before training, and the same run."""

from __future__ import annotations

import json

import pytest
import torch

import mathverify.data
from mathverify.cli import cli_main
from test_cli import _fit_args

ROUNDS = "[{steps: 2}, {steps: 2}]"
EVIDENCE = ("--model.evidence", "true", "--data.val_seen_size", "0.1", "--data.val_seen_max_rows", "20",
            "--trainer.callbacks+=callbacks.evidence_warm_start.EvidenceWarmStart")


def _fit(logs, *extra, stop_after_each_round: bool = False):
    cli_main(_fit_args(logs, "st", *EVIDENCE, *extra, rounds=ROUNDS, stop_after_each_round=stop_after_each_round))
    return logs / "st" / "version_0" / "checkpoints" / "last.ckpt"


def test_resume_reads_no_training_file_before_training(tmp_path, tiny_path, monkeypatch):
    straight = torch.load(_fit(tmp_path / "a"), weights_only=True)
    first = _fit(tmp_path / "b", stop_after_each_round=True)
    saved = json.loads(torch.load(first, weights_only=True)["VerifyDataModule"]["startup"])
    assert len(saved["val_rows"]) >= 40 and saved["seen_rows"] and saved["index_pass_done"]

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed fit read the training files before training")

    monkeypatch.setattr(mathverify.data, "validation_rows", refuse)
    monkeypatch.setattr(mathverify.data, "build_index", refuse)
    resumed = torch.load(_fit(tmp_path / "b", "--ckpt_path", "last"), weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 4
    for key, value in straight["state_dict"].items():  # the same run as without the stop
        assert torch.allclose(resumed["state_dict"][key], value, atol=1e-6), key
    assert resumed["VerifyDataModule"]["startup"] == straight["VerifyDataModule"]["startup"]


def test_a_checkpoint_without_startup_state_reads_the_files(tmp_path, tiny_path):
    first = _fit(tmp_path / "c", stop_after_each_round=True)
    state = torch.load(first, weights_only=True)
    del state["VerifyDataModule"]["startup"]  # as written before this state existed
    torch.save(state, first)
    resumed = torch.load(_fit(tmp_path / "c", "--ckpt_path", "last"), weights_only=True)
    assert resumed["global_step"] == 4 and "startup" in resumed["VerifyDataModule"]
