"""The settings a shipped config gives reach the built model: LoRA, quantization, dtype, checkpointing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from mathverify.model.backbone import LLAMA_PROJECTIONS
from mathverify.model.module import VerifierModule

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("quantization", "dtype", "lora_r", "lora_alpha", "lora_dropout", "use_rslora", "lora_bias", "gradient_checkpointing")


@pytest.mark.parametrize("config", ["llama3-8b-qlora-t4.yaml", "llama3-8b-8bit.yaml"])
def test_shipped_settings_are_read_back_from_the_built_model(tiny_path, config):
    import bitsandbytes as bnb

    said = yaml.safe_load((ROOT / "configs" / config).read_text())["model"]
    settings = {k: said[k] for k in KEYS if k in said}
    module = VerifierModule(backbone=tiny_path, **settings)
    module.build(torch.device("cpu"))
    model, dtype = module.model, getattr(torch, settings["dtype"])
    peft = model.peft_config["default"]
    assert (peft.r, peft.lora_alpha, peft.use_rslora, peft.bias) == (
        settings["lora_r"], settings["lora_alpha"], settings["use_rslora"], settings["lora_bias"])
    layers = model.get_base_model().get_decoder().layers
    for layer in layers:
        projections = {**dict(layer.self_attn.named_children()), **dict(layer.mlp.named_children())}
        for name in LLAMA_PROJECTIONS:
            lora = projections[name]
            assert lora.r["default"] == settings["lora_r"], name
            scale = settings["lora_alpha"] / (math.sqrt(settings["lora_r"]) if settings["use_rslora"] else settings["lora_r"])
            assert lora.scaling["default"] == pytest.approx(scale)
            assert lora.lora_dropout["default"].p == settings["lora_dropout"]
            base = lora.base_layer
            if settings["quantization"] == "4bit":
                assert isinstance(base, bnb.nn.Linear4bit)
                state = base.weight.quant_state
                assert state.quant_type == "nf4" and state.nested  # double quantization
                assert base.compute_dtype == dtype
            else:
                assert isinstance(base, bnb.nn.Linear8bitLt)
            assert not base.weight.requires_grad and lora.lora_A["default"].weight.requires_grad
        assert layer.gradient_checkpointing is settings["gradient_checkpointing"]
    assert model.get_base_model().get_input_embeddings().weight.dtype == dtype  # not upcast to fp32
    assert model.training  # the backbone trains in train mode (checkpointing acts only then)
