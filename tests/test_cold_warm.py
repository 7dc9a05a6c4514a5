"""A cache is a speed-up only: a fit with an empty cache (the tiny backbone and the start-up state
built) gives the same adapter, heads and metrics as the same fit with both cached."""

from __future__ import annotations

import torch

from mathverify.cli import cli_main
from test_cli import _fit_args, _scalars


def test_a_cold_and_a_warm_start_give_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHVERIFY_CACHE", str(tmp_path / "cache"))  # empty: the first fit builds everything
    runs = []
    for name in ("cold", "warm"):
        logs = tmp_path / name
        cli_main(_fit_args(logs, "cw", "--model.evidence", "true", "--trainer.callbacks+=callbacks.evidence_warm_start.EvidenceWarmStart",
                           rounds="[{steps: 3}]"))
        run_dir = logs / "cw" / "version_0"
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        runs.append((state["state_dict"], _scalars(run_dir)["val/loss"]))
    assert (tmp_path / "cache" / "startup").is_dir()  # the second fit took its start-up state from there
    (cold, cold_loss), (warm, warm_loss) = runs
    assert cold.keys() == warm.keys() and any(k.startswith("evidence_head.") for k in cold)
    for key in cold:
        assert torch.equal(cold[key], warm[key]), key
    assert cold_loss == warm_loss
