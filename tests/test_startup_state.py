"""A resumed fit takes its start-up state (validation rows and rule, the seen view, the evidence
index) from the checkpoint: no pass over the training files before training, and the same run."""

from __future__ import annotations

import json

import pytest
import torch

import mathverify.data.datamodule
import mathverify.data.startup
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

    monkeypatch.setattr(mathverify.data.datamodule, "validation_rows", refuse)
    monkeypatch.setattr(mathverify.data.datamodule, "build_index", refuse)
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


def _refuse_passes(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a fresh fit read the training files although its start-up state was cached")

    monkeypatch.setattr(mathverify.data.datamodule, "validation_rows", refuse)
    monkeypatch.setattr(mathverify.data.datamodule, "build_index", refuse)


def test_a_second_fresh_fit_on_the_same_files_takes_the_cached_state(tmp_path, tiny_path, monkeypatch, capfd):
    monkeypatch.setattr(mathverify.data.startup, "_folder", lambda: tmp_path / "cache" / "startup")
    data = tmp_path / "train.jsonl"
    from mathverify.data.synthetic import write_rows

    write_rows(data, 300, seed=0)
    first = torch.load(_fit(tmp_path / "a", "--data.train_files", str(data)), weights_only=True)
    assert len(list((tmp_path / "cache" / "startup").glob("*.startup.json"))) == 1
    capfd.readouterr()
    with monkeypatch.context() as patched:
        _refuse_passes(patched)
        second = torch.load(_fit(tmp_path / "b", "--data.train_files", str(data)), weights_only=True)
    assert "taken from the cache" in capfd.readouterr().err
    assert second["VerifyDataModule"]["startup"] == first["VerifyDataModule"]["startup"]
    assert second["VerifyDataModule"]["evidence_index"] == first["VerifyDataModule"]["evidence_index"]
    for key, value in first["state_dict"].items():  # the same run
        assert torch.allclose(second["state_dict"][key], value, atol=1e-6), key

    calls = []
    real = mathverify.data.datamodule.build_index
    monkeypatch.setattr(mathverify.data.datamodule, "build_index", lambda *a, **k: calls.append(1) or real(*a, **k))
    _fit(tmp_path / "c", "--data.train_files", str(data), "--data.startup_cache", "false")
    assert calls == [1]  # turned off: computed
    with open(data, "a", encoding="utf-8") as handle:  # the file changed: computed again, and saved
        handle.write(json.dumps({"question": "What is 1 + 1?", "answer": "2", "solution": "1 + 1 = 2",
                                 "is_correct": True}) + "\n")
    _fit(tmp_path / "d", "--data.train_files", str(data))
    assert calls == [1, 1]
    assert len(list((tmp_path / "cache" / "startup").glob("*.startup.json"))) == 2
    _fit(tmp_path / "e", "--data.train_files", str(data), "--data.val_seen_size", "0.2")  # another setting
    assert calls == [1, 1, 1]


def test_a_damaged_cache_entry_is_computed_again(tmp_path, tiny_path, monkeypatch):
    monkeypatch.setattr(mathverify.data.startup, "_folder", lambda: tmp_path / "cache" / "startup")
    _fit(tmp_path / "a")
    for path in (tmp_path / "cache" / "startup").glob("*.startup.json"):
        path.write_text('{"val_rows": [')  # a killed write cannot leave this (atomic), a disk fault can
    calls = []
    real = mathverify.data.datamodule.build_index
    monkeypatch.setattr(mathverify.data.datamodule, "build_index", lambda *a, **k: calls.append(1) or real(*a, **k))
    _fit(tmp_path / "b")
    assert calls == [1]
