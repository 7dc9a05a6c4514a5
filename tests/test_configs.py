"""Every shipped config parses (without loading any weights)."""

from pathlib import Path

import pytest

from mathverify.cli import cli_main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "backbone:" in printed
