"""Checkpoints: tuned threshold, safe loading, corrupt-file fallback, atomic writes; PEFT export."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from mathverify.cli import CheckpointError, CheckpointRefused, cli_main, resolve_ckpt_path
from test_cli import _fit_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_path):
    """One short fit with the threshold tuner: (logs dir, run folder)."""
    logs = tmp_path_factory.mktemp("run") / "logs"
    cli_main(_fit_args(logs, "exp", "--trainer.callbacks+=callbacks.threshold.DecisionThreshold",
                       rounds="[{steps: 2}, {steps: 2}]"))
    return logs, logs / "exp" / "version_0"


def test_threshold_is_tuned_logged_and_saved(trained):
    from test_cli import _scalars

    logs, run = trained
    scalars = _scalars(run)
    assert len(scalars["val/threshold_acc"]) == 2 and len(scalars["val/acc_tuned"]) == 2
    assert scalars["val/acc_tuned"][-1] >= scalars["val/acc"][-1] - 1e-6  # in-sample tuning never loses
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["decision_threshold"] == pytest.approx(scalars["val/threshold_used"][-1])
    assert scalars["val/threshold_used"][-1] in (pytest.approx(0.5), pytest.approx(scalars["val/threshold_acc"][-1]))


def test_a_tuned_threshold_is_adopted_only_when_it_beats_chance():
    from callbacks.threshold import adopted_threshold, best_thresholds

    gen = torch.Generator().manual_seed(0)
    # Calibrated scores: labels drawn with P(True) = p. The in-sample optimum is noise: kept at 0.5.
    probs = torch.rand(300, generator=gen)
    labels = (torch.rand(300, generator=gen) < probs).long()
    tuned = best_thresholds(probs, labels)["threshold_acc"]
    assert tuned != pytest.approx(0.5)
    assert adopted_threshold(probs, labels, tuned) == 0.5
    assert adopted_threshold(probs, labels, tuned, min_z=0) == tuned
    # A model that under-predicts True (true P = sqrt(p)): many rows between 0.25 and 0.5 are
    # True, the tuned cut moves them all the same way and is adopted.
    labels = (torch.rand(300, generator=gen) < probs.sqrt()).long()
    tuned = best_thresholds(probs, labels)["threshold_acc"]
    assert tuned < 0.4 and adopted_threshold(probs, labels, tuned) == tuned


def test_best_thresholds_match_brute_force():
    from callbacks.threshold import best_thresholds

    gen = torch.Generator().manual_seed(0)
    probs, labels = torch.rand(200, generator=gen), (torch.rand(200, generator=gen) > 0.6).long()
    tuned = best_thresholds(probs, labels)
    grid = [(((probs > t).long() == labels).float().mean().item(), t) for t in torch.linspace(0, 1, 2001).tolist()]
    assert tuned["acc_tuned"] == pytest.approx(max(grid)[0])
    assert ((probs > tuned["threshold_acc"]).long() == labels).float().mean().item() == pytest.approx(tuned["acc_tuned"])


def test_export_loads_with_plain_peft_and_matches_predict(trained, tmp_path, tiny_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathverify.data.synthetic import generate_rows, write_rows
    from mathverify.export import main as export_main

    logs, run = trained
    out = tmp_path / "adapter"
    assert export_main(["--ckpt_path", "exp:last", "--logs_dir", str(logs), "--output", str(out), "--merged"]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors", "mathverify.json"} <= {p.name for p in out.iterdir()}

    test_file = tmp_path / "t.csv"
    write_rows(test_file, 12, seed=3, test=True)
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", "exp:last", "--data.predict_files", str(test_file),
              "--submission", str(tmp_path / "s.csv"), "--probabilities", str(tmp_path / "p.csv"),
              "--trainer.enable_progress_bar", "false"])
    with open(tmp_path / "p.csv") as handle:
        ours = torch.tensor([float(r["p_true"]) for r in csv.DictReader(handle)], dtype=torch.float64)

    # Plain transformers + peft, following mathverify.json's recipe; no mathverify code below.
    meta = json.loads((out / "mathverify.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    before, _ = meta["prompt_template"].split("{solution}")
    ids = [meta["label_token_ids"]["negative"], meta["label_token_ids"]["positive"]]
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(meta["base_model"]), out).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    for model in (adapter, merged):
        plain, kept = [], []
        for index, row in enumerate(generate_rows(12, seed=3)):
            tokens = ([meta["bos_token_id"]] + tokenizer(before.format(**row), add_special_tokens=False)["input_ids"]
                      + tokenizer(row["solution"], add_special_tokens=False)["input_ids"] + meta["cue_token_ids"])
            if len(tokens) > meta["max_length"]:
                continue  # mathverify cut this one's solution middle; the recipe above does not
            with torch.no_grad():
                logits = model(torch.tensor([tokens])).logits[0, -1, ids]
            plain.append(float(logits.double().softmax(-1)[1]))
            kept.append(index)
        assert len(kept) >= 8
        assert torch.allclose(torch.tensor(plain, dtype=torch.float64), ours[kept], atol=1e-5)


def test_corrupt_last_falls_back_and_explicit_path_fails_in_one_line(trained, tmp_path, capsys):
    _, run = trained
    copy = tmp_path / "exp" / "version_0"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a save cut short
    found = resolve_ckpt_path("exp:last", str(tmp_path), "x", "fit")
    assert Path(found).name.startswith("round")
    assert f"last.ckpt: unreadable checkpoint (truncated or corrupt" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"last\.ckpt: unreadable checkpoint \(truncated or corrupt"):
        resolve_ckpt_path(str(last), str(tmp_path), "x", "predict")


def _fit_resume_error(monkeypatch, logs: Path) -> str:
    """``mathverify fit --ckpt_path last`` from the command line: the SystemExit message."""
    import sys

    monkeypatch.setattr(sys, "argv", ["mathverify", *_fit_args(logs, "exp", "--ckpt_path", "last")])
    with pytest.raises(SystemExit) as stop:
        cli_main()
    return str(stop.value)


def test_fit_resume_fails_when_checkpoints_exist_but_none_loads(trained, tmp_path, monkeypatch):
    _, run = trained
    copy = tmp_path / "exp" / "version_0"
    shutil.copytree(run, copy)
    files = sorted((copy / "checkpoints").glob("*.ckpt"))
    assert len(files) >= 2
    for path in files:
        path.write_bytes(path.read_bytes()[:1000])
    message = _fit_resume_error(monkeypatch, tmp_path)
    assert message.startswith("mathverify: error: ") and "\n" not in message and "none loads" in message
    for path in files:  # every file, and why
        assert f"{path}: unreadable checkpoint (truncated or corrupt" in message
    assert not (tmp_path / "exp" / "version_1").exists()  # no fresh run started


def test_refused_last_is_not_skipped_for_an_older_checkpoint(trained, tmp_path, monkeypatch):
    _, run = trained
    copy = tmp_path / "exp" / "version_0"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode()}, last)
    with pytest.raises(CheckpointRefused, match=r"last\.ckpt: refused: .*not falling back to an older checkpoint"):
        resolve_ckpt_path("exp:last", str(tmp_path), "x", "fit")
    message = _fit_resume_error(monkeypatch, tmp_path)
    assert message.startswith(f"mathverify: error: {last}: refused") and "\n" not in message


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode()}, evil)
    with pytest.raises(CheckpointRefused, match="refused: it holds more than tensors and plain types"):
        resolve_ckpt_path(str(evil), str(tmp_path), "x", "predict")


def test_atomic_save_keeps_the_previous_file_when_a_save_dies(tmp_path, monkeypatch):
    from callbacks.checkpoint import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("probs, labels", [
    ([0.0, 0.0, 1e-9, 0.3], [1, 1, 1, 1]),  # best: all True, below a probability of exactly 0
    ([0.7, 1.0, 1.0], [0, 0, 0]),  # best: all False, above a probability of exactly 1
    ([0.0, 1.0, 1.0, 0.0], [0, 1, 1, 0]),  # saturated but separable
])
def test_tuned_threshold_is_strictly_between_0_and_1(probs, labels):
    from callbacks.threshold import best_thresholds

    tuned = best_thresholds(torch.tensor(probs), torch.tensor(labels))
    for name in ("acc", "f1"):
        assert 0 < tuned[f"threshold_{name}"] < 1, tuned
        decisions = torch.tensor(probs) > tuned[f"threshold_{name}"]
        accuracy = (decisions.long() == torch.tensor(labels)).float().mean().item()
        if name == "acc":
            assert accuracy == pytest.approx(tuned["acc_tuned"])
