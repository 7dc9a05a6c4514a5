"""TimeBudget stops cleanly with a checkpoint; the same command with --ckpt_path last finishes."""

import torch

from mathverify.cli import cli_main
from test_cli import _fit_args


def test_budget_stops_with_a_checkpoint_and_resume_finishes(tmp_path, capsys):
    logs = tmp_path / "logs"
    last = logs / "budget" / "version_0" / "checkpoints" / "last.ckpt"
    # margin ~= budget: whatever the machine's speed, the first finished step crosses the deadline.
    cli_main(_fit_args(logs, "budget", "--trainer.callbacks+=callbacks.budget.TimeBudget",
                       "--trainer.callbacks.seconds=60", "--trainer.callbacks.margin=59.9",
                       rounds="[{steps: 4}]"))
    assert torch.load(last, weights_only=True)["global_step"] == 1
    assert "continue with the same command plus --ckpt_path last" in capsys.readouterr().err

    cli_main(_fit_args(logs, "budget", "--ckpt_path", "last", rounds="[{steps: 4}]"))
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 4 and state["VerifyDataModule"]["rows_seen"] == 4 * 4
