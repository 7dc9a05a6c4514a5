"""``data.batch_size`` caps a round's micro-batch (the out-of-memory knob) and keeps its rows per step."""

from __future__ import annotations

import pytest
import torch

from callbacks.rounds import StepRounds, fitting_divisor
from mathverify.cli import cli_main
from mathverify.errors import SettingsError
from test_cli import _fit_args


def test_fitting_divisor_keeps_rows_per_step():
    assert [fitting_divisor(4, most) for most in (1, 2, 3, 4, 8)] == [1, 2, 2, 4, 4]
    assert fitting_divisor(6, 4) == 3 and fitting_divisor(7, 6) == 1
    rounds = StepRounds([{"steps": 5, "accumulate": 12, "batch_size": 2}, {"steps": 5, "accumulate": 3}])
    rounds._most_rows = 1  # --data.batch_size 1
    assert rounds.micro_batches(0) == (1, 24)  # the T4 config after an out-of-memory stop: 24 rows per step kept
    assert rounds.plan(0) == (5 * 24, 1)
    assert rounds.micro_batches(1) == (1, 3)  # a round without its own batch_size takes data.batch_size


def _rows_per_step(path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in path.read_text().splitlines():
        step = int(line.split(" ", 1)[0])
        counts[step] = counts.get(step, 0) + 1
    return counts


def test_data_batch_size_on_the_command_line_splits_the_rounds_micro_batch(tmp_path, capfd, caplog):
    rows = tmp_path / "rows.txt"
    cli_main(_fit_args(tmp_path / "logs", "cap", "--trainer.callbacks+=resume_helpers.RecordRows",
                       f"--trainer.callbacks.path={rows}", "--data.batch_size", "2",
                       rounds="[{steps: 3, accumulate: 2, batch_size: 4}]"))
    assert _rows_per_step(rows) == {0: 8, 1: 8, 2: 8}  # 4 x 2 ran as 2 x 4: the same 8 rows per step
    out, err = capfd.readouterr()
    said = out + err + caplog.text  # Lightning's rank_zero_info goes through its logger
    assert "round 1: micro-batch 4 x 2 runs as 2 x 4 (data.batch_size 2): 8 rows per step, as set" in said
    state = torch.load(tmp_path / "logs" / "cap" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 3


def test_resume_inside_a_round_with_another_split_is_refused_in_one_line(tmp_path):
    logs = tmp_path / "logs"
    args = ["--trainer.callbacks+=resume_helpers.StopAtStep", "--trainer.callbacks.step=2"]  # last.ckpt at the stop
    cli_main(_fit_args(logs, "split", *args, "--data.batch_size", "4", rounds="[{steps: 4, batch_size: 4}]"))
    last = logs / "split" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2  # stopped inside the round
    with pytest.raises(SettingsError, match=r"stopped inside round 1, which ran 4 x 1 micro-batches; now 2 x 2 "
                                            r"\(data.batch_size 2\): resume with --data.batch_size 4"):
        cli_main(_fit_args(logs, "split", "--ckpt_path", "last", "--data.batch_size", "2", rounds="[{steps: 4, batch_size: 4}]"))
