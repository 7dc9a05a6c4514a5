"""Packed micro-batches (one sequence, attention kept inside each row) equal the padded pass."""

from __future__ import annotations

import pytest
import torch

from mathverify.cli import cli_main
from mathverify.model.module import VerifierModule
from mathverify.model.packing import pack_rows
from test_cli import _fit_args


def test_pack_rows_lays_real_tokens_end_to_end_with_positions_restarting():
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    tokens, positions, last = pack_rows(ids, torch.tensor([3, 2, 4]))
    assert tokens.tolist() == [[5, 6, 7, 8, 9, 1, 2, 3, 4]]
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert last.tolist() == [2, 4, 8]


def _module(tiny_path, packing: bool, checkpointing: bool, attn: str) -> VerifierModule:
    torch.manual_seed(0)
    # the padded reference runs every token (no shared prefix: its cached pass agrees to ~1e-8 only)
    module = VerifierModule(backbone=tiny_path, lora_r=4, packing=packing, gradient_checkpointing=checkpointing,
                            attn_implementation=attn, shared_prefix_min_tokens=0)
    module.build(torch.device("cpu"))
    for name, param in module.named_parameters():
        if "lora_B" in name:  # B starts at zero: give every LoRA matrix a gradient
            param.data.normal_(0.0, 0.05)
    return module.to(torch.float64).train()


def _rows(encoder, tokenizer):
    from mathverify.data.examples import collate_examples

    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "solution": "step " * (2 + 7 * i)} for i in range(5)]
    ids, _ = encoder.encode(rows)
    return collate_examples([{"input_ids": x} for x in ids], tokenizer.pad_token_id)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_and_gradients_equal_the_padded_pass_in_float64(tiny_path, encoder, tokenizer, checkpointing, attn):
    batch = _rows(encoder, tokenizer)
    assert len(set(batch["lengths"].tolist())) == 5  # every row its own length: padding to remove
    results = []
    for packing in (False, True):
        module = _module(tiny_path, packing, checkpointing, attn)
        margin, _ = module.margins(batch["input_ids"], batch["lengths"], batch["shared_prefix"])
        margin.square().sum().backward()
        grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
        results.append((margin.detach(), grads))
    (padded, padded_grads), (packed, packed_grads) = results
    # eager attention takes its softmax in float32 (transformers' Llama), so it agrees to ~1e-7 only
    tol = dict(rtol=1e-12, atol=1e-12) if attn == "sdpa" else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(packed, padded, **tol)
    assert padded_grads.keys() == packed_grads.keys() and any("layers.0" in n for n in packed_grads)
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], **tol, msg=lambda m: f"{name}: {m}")


def test_a_short_packed_fit_gives_the_padded_fits_adapter(tmp_path):
    adapters = {}
    for packing in ("false", "true"):
        logs = tmp_path / packing
        cli_main(_fit_args(logs, "pack", "--model.packing", packing, rounds="[{steps: 3, accumulate: 2}]"))
        adapters[packing] = torch.load(logs / "pack" / "version_0" / "checkpoints" / "last.ckpt",
                                       weights_only=True)["state_dict"]
    padded, packed = adapters["false"], adapters["true"]
    assert padded.keys() == packed.keys() and padded
    moved = max(float(v.abs().max()) for k, v in padded.items() if "lora_B" in k)
    assert moved > 1e-4  # the steps changed the adapter: the comparison means something
    assert max(float((packed[k] - padded[k]).abs().max()) for k in padded) <= 1e-5
