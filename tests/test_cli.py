"""End-to-end: fit, validate and predict through the real LightningCLI on the tiny backbone."""

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from mathverify.cli import cli_main


ROUNDS = "[{steps: 3}, {steps: 2, accumulate: 2, batch_size: 2, lr: 0.001}]"


def _fit_args(logs: Path, run: str, *extra: str, rounds: str = ROUNDS, stop_after_each_round: bool = False) -> list[str]:
    stop = ["--trainer.callbacks.stop_after_each_round=true"] if stop_after_each_round else []  # StepRounds' own
    return [
        "fit", "--run_name", run, "--logs_dir", str(logs),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
        "--trainer.callbacks+=callbacks.rounds.StepRounds", f"--trainer.callbacks.rounds={rounds}", *stop,
        "--trainer.callbacks+=callbacks.metrics.VerificationMetrics",
        "--trainer.callbacks+=callbacks.checkpoint.RoundCheckpoint",
        "--model.max_length", "256", "--model.lora_r", "4",
        "--data.train_files", "synthetic:300:0", "--data.val_size", "40", "--data.val_scan_rows", "300",
        "--data.batch_size", "4", "--data.eval_batch_size", "16", "--data.buffer_size", "32",
        *extra,
    ]


def _scalars(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_then_predict_with_short_form(tmp_path, tiny_path, monkeypatch):
    logs = tmp_path / "logs"
    cli_main(_fit_args(logs, "e2e"))
    run_dir = logs / "e2e" / "version_0"
    scalars = _scalars(run_dir)
    assert len(scalars["val/acc"]) == 2 and len(scalars["val/majority_acc"]) == 2  # one per round
    assert "train/loss" in scalars and "val/auroc" in scalars
    assert (run_dir / "config.yaml").is_file()

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5
    keys = list(ckpt["state_dict"])
    assert keys and all("lora_" in k for k in keys)  # adapters only, never the frozen base
    base_bytes = (Path(tiny_path) / "model.safetensors").stat().st_size
    adapter_bytes = sum(v.numel() * v.element_size() for v in ckpt["state_dict"].values())
    assert adapter_bytes < base_bytes / 4
    history = ckpt["callbacks"]["StepRounds"]["history"]
    assert [(h["round"], h["steps"], h["rows"]) for h in history] == [(1, 3, 12), (2, 5, 8)]
    assert ckpt["VerifyDataModule"]["rows_seen"] == 3 * 4 + 4 * 2  # round 1: 3x4 rows, round 2: 4x2

    from mathverify.cli import resolve_ckpt_path
    best = resolve_ckpt_path("e2e:best", str(logs), "mathverify", "predict")
    assert Path(best).is_file()
    name = re.fullmatch(r"round(\d+)-step(\d+)\.ckpt", Path(best).name)  # one round numbering with the table
    assert name and (int(name[1]), int(name[2])) in [(h["round"], h["steps"]) for h in history]
    assert resolve_ckpt_path("last", str(logs), "e2e", "predict").endswith("version_0/checkpoints/last.ckpt")

    test_file = tmp_path / "test.csv"
    from mathverify.data.synthetic import write_rows
    write_rows(test_file, 37, seed=9, test=True)
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", "e2e:best", "--data.predict_files", str(test_file),
              "--probabilities", str(tmp_path / "p.csv"), "--trainer.enable_progress_bar", "false"])
    assert sorted(run_dir.glob("events.out.tfevents.*")) == events  # predict logs nothing: no empty events file
    assert (run_dir / "config-predict.yaml").is_file()
    rows = _read_csv(run_dir / "submission.csv")
    assert [r["ID"] for r in rows] == [str(i) for i in range(37)]
    assert {r["is_correct"] for r in rows} <= {"True", "False"}
    # predicting again refuses to replace the submission: one line naming the flag, no traceback
    monkeypatch.setattr(sys, "argv", ["mathverify", "predict", "--logs_dir", str(logs), "--ckpt_path", "e2e:best",
                                      "--data.predict_files", str(test_file)])
    with pytest.raises(SystemExit) as refused:
        cli_main()
    assert str(refused.value) == (f"mathverify: error: {run_dir / 'submission.csv'} already exists; "
                                  "add --overwrite true to replace it")
    probs = _read_csv(tmp_path / "p.csv")
    assert len(probs) == 37 and all(0.0 <= float(p["p_true"]) <= 1.0 for p in probs)

    # validate reads model + prompt settings back from the checkpoint: no training config needed
    cli_main(["validate", "--logs_dir", str(logs), "--ckpt_path", "e2e:last", "--data.train_files", "synthetic:300:0",
              "--data.val_size", "40", "--data.val_scan_rows", "300", "--trainer.enable_progress_bar", "false"])
    assert (run_dir / "config-validate.yaml").is_file()
    # validate logs at the step of the checkpoint it evaluated (5), beside fit's round ends (3, 5)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [validate_events] = sorted(set(run_dir.glob("events.out.tfevents.*")) - set(events))
    accumulator = EventAccumulator(str(validate_events))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("val/loss")] == [5]
    cli_main(["test", "--logs_dir", str(logs), "--ckpt_path", "e2e:best", "--data.test_files", "synthetic:60:4",
              "--trainer.enable_progress_bar", "false", "--trainer.callbacks+=callbacks.metrics.VerificationMetrics"])
    assert "test/acc" in _scalars(run_dir) and (run_dir / "config-test.yaml").is_file()

    # a second fit of the same run name opens a new version instead of clobbering the first
    cli_main(_fit_args(logs, "e2e", rounds="[{steps: 1}]"))
    assert (logs / "e2e" / "version_1" / "checkpoints" / "last.ckpt").is_file()


def test_startup_is_quiet_and_a_pipe_gets_progress_lines(tmp_path, capfd, caplog):
    """stdout is not a terminal here (pytest captures it): the CLI prints progress lines instead of
    a live bar, and none of the start-up messages that are not the user's business."""
    import warnings

    args = _fit_args(tmp_path / "logs", "quiet", rounds="[{steps: 25}]")
    for flag in ("--trainer.enable_progress_bar", "--trainer.enable_model_summary"):
        del args[args.index(flag):args.index(flag) + 2]  # Lightning's defaults, as a user gets them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main(args)
    out, err = capfd.readouterr()
    assert "step 25/25  round 1: 25/25 batches" in out and "rows/s" in out and "round ETA 0:00" in out
    assert "validation at step 25: val/loss" in out
    shown = out + err + caplog.text  # Lightning logs the summary through its logger
    assert "Trainable params" in shown and "FLOPs" not in shown and "Flops" not in shown  # counted nothing: 0
    said = shown + "\n".join(str(w.message) for w in caught)
    for noise in ("💡 Tip", "`max_epochs` was not set", "LeafSpec", "`is_gradient_checkpointing` is deprecated",
                  "has `__len__` defined", "module(s) in eval mode"):
        assert noise not in said, noise


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_backbones_run(tmp_path, quantization):
    logs = tmp_path / "logs"
    cli_main(_fit_args(logs, "q", "--model.quantization", quantization, rounds="[{steps: 2}]"))
    ckpt = logs / "q" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert state and all("lora_" in k for k in state)
    test_file = tmp_path / "t.jsonl"
    from mathverify.data.synthetic import write_rows
    write_rows(test_file, 9, seed=2, test=True)
    cli_main(["predict", "--logs_dir", str(logs), "--ckpt_path", str(ckpt), "--data.predict_files", str(test_file),
              "--submission", str(tmp_path / "sub.csv"), "--trainer.enable_progress_bar", "false"])
    assert [r["ID"] for r in _read_csv(tmp_path / "sub.csv")] == [str(i) for i in range(9)]


@pytest.mark.parametrize("pad", ["missing", "eos"])
def test_local_llama_folder_by_path(tmp_path, tokenizer, pad):
    from conftest import make_llama_folder

    folder = make_llama_folder(tmp_path / "llama", tokenizer, pad)
    logs = tmp_path / "logs"
    cli_main(_fit_args(logs, "local", "--model.backbone", str(folder), rounds="[{steps: 1}]"))
    assert (logs / "local" / "version_0" / "checkpoints" / "last.ckpt").is_file()
