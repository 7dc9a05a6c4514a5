"""A run killed with SIGKILL and resumed with --ckpt_path last equals an uninterrupted run."""

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTED_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK")


def _fit(logs: Path, rows_file: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARS and not k.startswith(("PL_", "LIGHTNING_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
    args = [
        sys.executable, "-m", "mathverify", "fit", "--run_name", "resume", "--logs_dir", str(logs),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
        "--trainer.callbacks+=callbacks.rounds.StepRounds",
        "--trainer.callbacks.rounds=[{steps: 5, accumulate: 2}, {steps: 3}]",
        "--trainer.callbacks+=callbacks.checkpoint.RoundCheckpoint", "--trainer.callbacks.every_n_train_steps=2",
        "--trainer.callbacks+=resume_helpers.RecordRows", f"--trainer.callbacks.path={rows_file}",
        "--model.max_length", "256", "--model.lora_r", "4", "--model.lora_dropout", "0.1",
        "--data.train_files", "synthetic:300:0", "--data.val_size", "20", "--data.val_scan_rows", "100",
        "--data.batch_size", "3", "--data.buffer_size", "16", *extra,
    ]
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _adapter(logs: Path) -> dict:
    return torch.load(logs / "resume" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _rows_by_step(path: Path) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        step, row = line.split(" ", 1)
        rows.setdefault(int(step), []).append(row)
    return rows


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    reference = _fit(tmp_path / "a", tmp_path / "a.rows")
    assert reference.returncode == 0, reference.stderr[-2000:]

    killed = _fit(tmp_path / "b", tmp_path / "b.rows", "--trainer.callbacks+=resume_helpers.KillAtStep",
                  "--trainer.callbacks.step=7")
    assert killed.returncode == -9  # SIGKILL after step 7 (round 2, one step past the save at 6)
    resumed = _fit(tmp_path / "b", tmp_path / "b2.rows", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected = _rows_by_step(tmp_path / "a.rows")
    first, second = _rows_by_step(tmp_path / "b.rows"), _rows_by_step(tmp_path / "b2.rows")
    assert min(second) == 6  # resumed from the step-6 checkpoint
    assert {s: r for s, r in first.items() if s < 6} | second == expected  # no row repeated or skipped

    ours, theirs = _adapter(tmp_path / "b"), _adapter(tmp_path / "a")
    assert ours.keys() == theirs.keys()
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) <= 1e-6
