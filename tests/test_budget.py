"""TimeBudget stops cleanly with a checkpoint; the same command with --ckpt_path last finishes,
and the rounds table counts the round's wall time across both processes, nothing more."""

import time

import pytest
import torch

from mathverify.cli import cli_main
from test_cli import _fit_args


def test_budget_stops_with_a_checkpoint_and_resume_finishes(tmp_path, capsys, caplog):
    logs = tmp_path / "logs"
    last = logs / "budget" / "version_0" / "checkpoints" / "last.ckpt"
    rounds = "[{steps: 4, accumulate: 2}]"
    started = time.monotonic()
    # The reserve (margin) alone exceeds the budget: the first finished step stops, on any machine.
    cli_main(_fit_args(logs, "budget", "--trainer.callbacks+=callbacks.budget.TimeBudget",
                       "--trainer.callbacks.seconds=1", "--trainer.callbacks.margin=3600", rounds=rounds))
    assert torch.load(last, weights_only=True)["global_step"] == 1
    err = capsys.readouterr().err
    assert "TimeBudget: stopped at step 1 of 4" in err and "continue with:" in err
    # 3 steps left cannot fit in a 1 s budget that reserves an hour: the message says so
    assert "with the same 1s budget it stops again; --trainer.callbacks.seconds=" in err
    # not followed by Lightning's "`max_epochs=1` reached", which reads as if training had finished
    assert "`Trainer.fit` stopped" not in caplog.text + err

    cli_main(_fit_args(logs, "budget", "--ckpt_path", "last", rounds=rounds))
    wall = time.monotonic() - started
    state = torch.load(last, weights_only=True)
    # resumed inside the round: its accumulation still applies (Lightning skips on_train_epoch_start)
    assert state["global_step"] == 4 and state["VerifyDataModule"]["rows_seen"] == 4 * 2 * 4
    [row] = state["callbacks"]["StepRounds"]["history"]
    assert row["rows"] == 4 * 2 * 4  # counted from the round's start, not from the resume
    assert 0 < row["seconds"] < wall  # wall time of the round in both processes, not a clock reading


def test_max_steps_that_contradicts_the_rounds_is_refused(tmp_path):
    from mathverify.errors import SettingsError

    with pytest.raises(SettingsError, match=r"--trainer.max_steps 2 conflicts with the rounds \(1 round\(s\), 4 steps\)"):
        cli_main(_fit_args(tmp_path / "logs", "steps", "--trainer.max_steps", "2", rounds="[{steps: 4}]"))


def test_continue_command_resumes_from_last():
    from callbacks.budget import continue_command

    assert continue_command(["fit", "--config", "c.yaml", "--ckpt_path", "old.ckpt", "--x", "a b"]) == \
        "mathverify fit --config c.yaml --x 'a b' --ckpt_path last"
    assert continue_command(["fit", "--ckpt_path=old.ckpt"]) == "mathverify fit --ckpt_path last"
