"""Shared fixtures: an offline tiny Llama and tokenizer, built once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Build the tiny backbone into a per-session cache, never the user's.
_CACHE = Path(os.environ.get("MATHVERIFY_TEST_CACHE", "/tmp/mathverify-test-cache"))
os.environ["MATHVERIFY_CACHE"] = str(_CACHE)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_path() -> str:
    """Folder of the built-in tiny Llama (config, weights, tokenizer)."""
    from mathverify.model.backbone import resolve_backbone

    return resolve_backbone("tiny")


@pytest.fixture(scope="session")
def tokenizer(tiny_path):
    from mathverify.model.backbone import load_tokenizer

    return load_tokenizer(tiny_path)


@pytest.fixture(scope="session")
def encoder(tokenizer):
    from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder

    return PromptEncoder(tokenizer, SEED_TEMPLATE, "True", "False", 512)


def make_llama_folder(folder: Path, tokenizer, pad: str) -> Path:
    """Save a small random Llama with ``tokenizer`` whose pad token is ``pad``: 'missing' or 'eos'."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    if pad == "missing":
        tokenizer.pad_token = None
    elif pad == "eos":
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def write_csv(tmp_path):
    """Write rows (dicts) to a CSV file and return its path."""
    import csv

    def write(rows: list[dict], name: str = "rows.csv") -> str:
        path = tmp_path / name
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return str(path)

    return write


@pytest.fixture(scope="session")
def evidence_run(tmp_path_factory, tiny_path):
    """A short fit of the tiny Llama with evidence, a fitted combination and both decision thresholds (the verifier,
    reward and score tests use it): (logs dir, its last checkpoint)."""
    from mathverify.cli import cli_main
    from test_cli import _fit_args

    logs = tmp_path_factory.mktemp("verifier") / "logs"
    cli_main(_fit_args(logs, "ver", "--model.evidence", "true", "--data.val_seen_size", "0.1",
                       "--data.val_seen_max_rows", "20",
                       # min_gain 0: the combination always moves, so the tests see whether every path applies it
                       "--trainer.callbacks+=callbacks.combination.FitCombination", "--trainer.callbacks.min_rows=1",
                       "--trainer.callbacks.min_gain=0", "--trainer.callbacks+=callbacks.threshold.DecisionThreshold",
                       rounds="[{steps: 3}]"))
    return logs, logs / "ver" / "version_0" / "checkpoints" / "last.ckpt"
