"""Gradient checkpointing really keeps only each layer's input, in a step Lightning's Trainer runs.

A Llama of Llama-3-8B width (hidden 4,096, MLP 14,336, 32 query / 8 key-value heads), two layers,
trained one step by the real Trainer through the module's own forward: the bytes kept alive for the
backward are counted (``mathverify.model.memory``) between forward and backward. Until 2026-12-04
the backbone stayed in the eval mode ``from_pretrained`` leaves it in (Lightning 2.6 does not call
``.train()``), so transformers never checkpointed and a 15 GB T4 ran out of memory: this test fails then
(31.0 hidden vectors kept per token and layer with checkpointing "on", 29.0 off; 1.52 on since).
"""

from __future__ import annotations

import pytest
import torch

from mathverify.model.memory import SavedActivations, module_tensors

HIDDEN, LAYERS, ROWS, TOKENS = 4096, 2, 2, 96


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory, tokenizer) -> str:
    """Two layers of Llama-3-8B's shape (small vocabulary), random weights, with the tiny tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("wide-llama")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=14336,
                         num_hidden_layers=LAYERS, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=1024, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


class CountSavedActivations:
    """Lightning callback: bytes alive between the first training forward and its backward."""

    def __new__(cls):
        from lightning.pytorch import Callback

        class _Count(Callback):
            def __init__(self) -> None:
                self.counter = None
                self.saved_bytes = None
                self.decoder_training = None

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                self.decoder_training = pl_module.model.get_base_model().get_decoder().training
                existing = module_tensors(pl_module) + [v for v in batch.values() if isinstance(v, torch.Tensor)]
                self.counter = SavedActivations(existing).start()

            def on_before_backward(self, trainer, pl_module, loss) -> None:
                self.counter.stop()
                self.saved_bytes = self.counter.live_bytes()

        return _Count()


def _one_step(backbone: str, checkpointing: bool, shared_prefix: int) -> tuple[int, bool]:
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    from mathverify.model.module import VerifierModule

    torch.manual_seed(0)
    ids = torch.randint(10, 800, (ROWS, TOKENS))  # the tiny tokenizer has 833 tokens
    ids[:, :shared_prefix] = ids[0, :shared_prefix]  # the prompt's instruction text, common to every row
    batch = {"input_ids": ids, "lengths": torch.full((ROWS,), TOKENS), "labels": torch.tensor([0, 1]),
             "shared_prefix": shared_prefix}
    module = VerifierModule(backbone=backbone, lora_r=8, lora_dropout=0.1, gradient_checkpointing=checkpointing)
    count = CountSavedActivations()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[count])
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    return count.saved_bytes, count.decoder_training


@pytest.mark.parametrize("shared_prefix", [0, 32], ids=["plain", "shared-prefix"])
def test_gradient_checkpointing_keeps_only_each_layers_input(wide_llama, shared_prefix):
    per = ROWS * TOKENS * LAYERS * HIDDEN * 4  # bytes of one float32 hidden vector per token and layer
    kept, training = _one_step(wide_llama, checkpointing=True, shared_prefix=shared_prefix)
    plain, _ = _one_step(wide_llama, checkpointing=False, shared_prefix=shared_prefix)
    report = (f"saved for backward per token and layer: {kept / per:.2f} hidden vectors with checkpointing, "
              f"{plain / per:.2f} without ({kept / 2**20:.1f} vs {plain / 2**20:.1f} MiB)")
    print(report)
    # The layer input, plus (counted over all layers) the final norm's few [B, T, H] tensors and,
    # on the shared-prefix path, the prefix's own un-checkpointed activations (32 of 96 tokens).
    assert kept / per <= (1.75 if shared_prefix == 0 else 6.0), report
    assert plain / per >= 10.0, report  # a Llama layer keeps ~15-20 hidden-wide tensors per token
    assert kept * 4 < plain, report
    assert training, "the backbone trains in train mode (as HF Trainer and TRL put it)"
