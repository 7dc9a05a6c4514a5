"""fit, validate, test and predict each run with the shipped callbacks (configs/demo.yaml's list holds
every callback class any shipped config uses)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mathverify.cli import cli_main

ROOT = Path(__file__).resolve().parents[1]


def _shipped_callback_classes() -> set[str]:
    found = set()
    for config in (ROOT / "configs").glob("*.yaml"):
        said = yaml.safe_load(config.read_text()) or {}
        found |= {c["class_path"] for c in (said.get("trainer") or {}).get("callbacks") or [] if isinstance(c, dict)}
    return found


def _small_demo(tmp_path: Path) -> Path:
    """configs/demo.yaml with 2 steps and a small data set; its callbacks list unchanged but the rounds."""
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("StepRounds"):
            callback["init_args"]["rounds"] = [{"steps": 2}]
    config["trainer"].update(enable_progress_bar=False, enable_model_summary=False)
    config["model"]["max_length"] = 256
    # 90 validation rows: more than FitCombination's min_rows (50), so validate would run its fit
    config["data"].update(train_files="synthetic:400:0", val_size=90, val_scan_rows=400, batch_size=4,
                          eval_batch_size=16, buffer_size=32, val_seen_size=0.1, val_seen_max_rows=20)
    path = tmp_path / "demo-small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_subcommand_runs_with_the_shipped_callbacks(tmp_path, capsys):
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    listed = {c["class_path"] for c in demo["trainer"]["callbacks"]}
    assert _shipped_callback_classes() - listed <= {"lightning.pytorch.strategies.FSDPStrategy"}
    config, logs = _small_demo(tmp_path), tmp_path / "logs"
    common = ["--config", str(config), "--logs_dir", str(logs)]
    cli_main(["fit", *common])
    ckpt = str(logs / "demo" / "version_0" / "checkpoints" / "last.ckpt")
    cli_main(["validate", *common, "--ckpt_path", ckpt])
    cli_main(["test", *common, "--ckpt_path", ckpt, "--data.test_files", "synthetic:120:3"])
    assert "test: accuracy" in capsys.readouterr().out
    # without --config (no callbacks listed) test still reports accuracy beside the no-model rules
    cli_main(["test", "--logs_dir", str(logs), "--ckpt_path", ckpt, "--data.test_files", "synthetic:120:3",
              "--trainer.enable_progress_bar", "false"])
    said = capsys.readouterr().out
    assert re.search(r"^test: accuracy 0\.\d{4}, AUROC 0\.\d{4}; no model: majority class 0\.\d{4}, "
                     r"agreement rule 0\.\d{4}$", said, re.M), said
    for name in ("test/select_acc", "test/vote_acc", "test/agreement_acc", "test/majority_acc"):
        assert name in said
    cli_main(["predict", *common, "--ckpt_path", ckpt, "--data.predict_files", "synthetic-test:30:7",
              "--submission", str(tmp_path / "sub.csv")])
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 31


def test_help_names_every_command_and_each_has_its_own_help(capsys):
    import pytest

    with pytest.raises(SystemExit) as done:
        cli_main(["--help"])
    assert done.value.code == 0
    said = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "score", "export", "check-data", "sweep"):
        assert command in said, command
    for command in ("score", "export", "check-data", "sweep"):
        with pytest.raises(SystemExit) as done:
            cli_main([command, "--help"])
        assert done.value.code == 0 and "usage:" in capsys.readouterr().out, command
