"""Every shipped config builds what it says: model, data, callbacks, optimizer, trainer settings.

The configs target GPUs; here the trainer is overridden to one CPU process (FSDP's own parsing is
checked in test_ddp.py), and nothing loads weights: the module builds its model in configure_model.
"""

from pathlib import Path

import pytest
import yaml

from mathverify.cli import _run

# sweep-*.yaml are sweep files (mathverify sweep); tests/test_sweep.py parses their trials' fit configs
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("sweep-"))
ON_CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1", "--trainer.strategy=auto",
          "--trainer.precision=32-true", "--trainer.logger=false"]
MODEL_KEYS = ("backbone", "quantization", "dtype", "max_length", "lora_r", "lora_alpha", "lora_dropout", "use_rslora",
              "lora_bias", "gradient_checkpointing", "warmup_fraction", "schedule")


def test_there_are_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_builds_what_it_says(config, tmp_path):
    import torch

    from callbacks.checkpoint import RoundCheckpoint
    from callbacks.rounds import StepRounds
    from callbacks.threshold import DecisionThreshold

    said = yaml.safe_load(config.read_text())
    cli = _run(["--config", str(config), "--logs_dir", str(tmp_path), *ON_CPU], run=False)
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    assert model.model is None  # no weights were loaded

    for key in MODEL_KEYS:
        if key in said["model"]:
            assert model.hparams[key] == said["model"][key], key
    for key, value in said["data"].items():
        assert data.hparams[key] == value, key
    assert data.hparams.max_length == model.hparams.max_length  # linked, not set twice

    # the optimizer the config names, with its settings, and weight decay only on matrices
    weight, bias = torch.nn.Parameter(torch.zeros(4, 4)), torch.nn.Parameter(torch.zeros(4))
    optimizer = model.optimizer_factory([{"params": [weight]}, {"params": [bias], "weight_decay": 0.0}])
    named = said["model"]["optimizer"]
    assert f"{type(optimizer).__module__}.{type(optimizer).__name__}".endswith(named["class_path"].split(".")[-1])
    assert optimizer.param_groups[0]["lr"] == named["init_args"]["lr"]
    assert optimizer.param_groups[0]["weight_decay"] == named["init_args"]["weight_decay"]
    assert optimizer.param_groups[1]["weight_decay"] == 0.0

    callbacks = {type(c): c for c in trainer.callbacks}
    rounds = callbacks[StepRounds]
    said_rounds = next(c for c in said["trainer"]["callbacks"] if c["class_path"].endswith("StepRounds"))
    assert rounds.rounds == [dict(r) for r in said_rounds["init_args"]["rounds"]]
    assert DecisionThreshold in callbacks  # every config tunes and stores the decision threshold
    assert callbacks[RoundCheckpoint].monitor == "val/loss"
    assert trainer.gradient_clip_val == 1.0 and trainer.gradient_clip_algorithm in (None, "norm")
    assert cli.config["seed_everything"] == said["seed_everything"]


def test_gpu_check_overlay_keeps_the_shipped_qlora_config(tmp_path):
    """benchmarks/gpu.sh runs configs/llama3-8b-qlora.yaml with benchmarks/gpu_cli.yaml on top: the
    overlay must replace only the rounds and the data size, so it repeats the shipped callbacks list."""
    from callbacks.rounds import StepRounds

    root = Path(__file__).resolve().parents[1]
    shipped, overlay = root / "configs" / "llama3-8b-qlora.yaml", root / "benchmarks" / "gpu_cli.yaml"
    said = yaml.safe_load(shipped.read_text())
    cli = _run(["--config", str(shipped), "--config", str(overlay), "--logs_dir", str(tmp_path), *ON_CPU], run=False)
    shipped_callbacks = [c["class_path"] for c in said["trainer"]["callbacks"]]
    built = [f"{type(c).__module__}.{type(c).__name__}" for c in cli.trainer.callbacks]
    for path in shipped_callbacks:
        assert any(b.endswith(path.split(".")[-1]) for b in built), f"overlay drops {path}"
    assert any(b.endswith("DeviceStatsMonitor") for b in built)
    assert next(c for c in cli.trainer.callbacks if isinstance(c, StepRounds)).rounds[0]["steps"] == 12
    for key in MODEL_KEYS:
        if key in said["model"]:
            assert cli.model.hparams[key] == said["model"][key], key
