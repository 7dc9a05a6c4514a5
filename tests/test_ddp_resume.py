"""Two CPU ranks (gloo), real ``python -m mathverify`` launches: a time-budget stop decided by rank
0 alone stops every rank at the same step; the resume restores each rank's own generators; an error
on rank 0 ends the other rank instead of leaving it in a collective until the 30-minute timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_ddp import _cli_args, _clean_env

ROUNDS = "[{steps: 4}]"


def _launch(cwd: Path, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "mathverify", "fit", "--run_name", "ddp", "--logs_dir", "logs",
           "--trainer.num_sanity_val_steps", "0",
           "--trainer.callbacks+=callbacks.rounds.StepRounds", f"--trainer.callbacks.rounds={ROUNDS}",
           "--trainer.callbacks+=callbacks.checkpoint.RoundCheckpoint",
           "--model.max_length", "256", "--model.lora_r", "4", "--model.lora_dropout", "0.1",
           "--data.train_files", "synthetic:300:0", "--data.val_size", "8", "--data.val_scan_rows", "100",
           "--data.batch_size", "2", "--data.eval_batch_size", "8", "--data.buffer_size", "16", *args]
    cmd = cmd[:3] + _cli_args(cwd, tuple(cmd[3:]), devices=2, probe=None)
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_leftovers(cwd)
        pytest.fail(f"a rank still ran after {timeout} s (waiting in a collective?)")
    return done, time.monotonic() - started


def _leftovers(cwd: Path) -> list[int]:
    """Processes still running in this test's folder (ranks the test launched)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(cwd):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _kill_leftovers(cwd: Path) -> None:
    for pid in _leftovers(cwd):
        os.kill(pid, 9)


def test_budget_stop_is_rank_0s_and_resume_restores_each_ranks_rng(tmp_path, tiny_path):
    last = tmp_path / "logs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt"
    # Rank 0's clock says "out of time" after the first step; rank 1's would run for an hour.
    stopped, _ = _launch(tmp_path, "--trainer.callbacks+=callbacks.budget.TimeBudget",
                         "--trainer.callbacks.seconds=3600", "--trainer.callbacks.margin=0",
                         "--trainer.callbacks+=resume_helpers.SkewBudgetClock", "--trainer.callbacks.rank=0",
                         "--trainer.callbacks+=resume_helpers.RngProbe", f"--trainer.callbacks.folder={tmp_path}/r0",
                         "--trainer.callbacks.perturb=true")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert stopped.stderr.count("TimeBudget: stopped at step 1 of 4") == 1
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 1
    saved = state["rng"]["per_rank"]
    assert len(saved) == 2 and not torch.equal(saved[0]["torch"], saved[1]["torch"])  # each rank's own

    resumed, _ = _launch(tmp_path, "--ckpt_path", "last", "--trainer.callbacks+=resume_helpers.RngProbe",
                         f"--trainer.callbacks.folder={tmp_path}/r1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 4
    probes = [json.loads((tmp_path / "r1" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, probe in enumerate(probes):
        assert probe["now"] == probe["saved"][rank], f"rank {rank} did not get its own generator back"


def test_error_on_rank_0_ends_the_other_rank(tmp_path, tiny_path):
    done, seconds = _launch(tmp_path, "--trainer.callbacks+=resume_helpers.RaiseAtStep",
                            "--trainer.callbacks.rank=0", "--trainer.callbacks.step=2", timeout=180)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "mathverify: error: rank 0: too many bad rows (raised by the test)" in done.stderr
    assert _leftovers(tmp_path) == []
    print(f"[2-rank run with an error on rank 0 ended in {seconds:.0f} s]")
