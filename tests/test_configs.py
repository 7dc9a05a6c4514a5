"""Every shipped config parses (without loading any weights)."""

from pathlib import Path

import pytest

from mathverify.cli import cli_main

# sweep-*.yaml are sweep files (mathverify sweep); tests/test_sweep.py parses their trials' fit configs
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("sweep-"))


def test_there_are_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "backbone:" in printed
