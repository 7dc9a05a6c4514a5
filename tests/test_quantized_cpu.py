"""bitsandbytes 4-bit on CPU: one code path whatever the CPU (``backbone.use_one_cpu_4bit_path``).

On CPUs with AVX512-BF16, bitsandbytes repacks a Linear4bit the first time it runs in eval mode
without grad and from then on uses a bf16 kernel without an input gradient. These tests run an
eval pass (a validation) and then a training pass, as ``fit`` does, and check what mathverify
promises afterwards. On a CPU without AVX512-BF16 they also pass without the fix: the second test
turns bitsandbytes' own switch on to show the fix is what keeps the path, where the CPU has it.
"""

from __future__ import annotations

import pytest
import torch

from mathverify.model.backbone import load_causal_lm


def _linear4bit_layers(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _eval_then_train_grad(model, ids):
    """A no-grad eval pass (what validation does), then a training pass; d(loss)/d(embeddings)."""
    model.eval()
    with torch.no_grad():
        evaluated = model(input_ids=ids).logits
    model.train()
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    trained = model(inputs_embeds=embeds).logits
    trained.float().pow(2).mean().backward()
    return evaluated, trained.detach(), embeds.grad


@pytest.fixture
def model_4bit(tiny_path):
    return load_causal_lm(tiny_path, quantization="4bit", dtype="float32", device=torch.device("cpu"),
                          quant_storage="bfloat16")


def test_eval_pass_keeps_4bit_storage_and_numbers(model_4bit):
    ids = torch.tensor([[5, 17, 99, 300, 42, 7]])
    layers = _linear4bit_layers(model_4bit)
    assert layers and all(not layer.support_avx512bf16_for_cpu for layer in layers)
    evaluated, trained, grad = _eval_then_train_grad(model_4bit, ids)
    # Storage as configured (FSDP flattens it with the bf16 weights), never repacked to uint8.
    assert {layer.weight.dtype for layer in layers} == {torch.bfloat16}
    # Eval and train mode compute the same function (no dropout in the base model): one kernel.
    assert torch.allclose(evaluated, trained, atol=1e-5), (evaluated - trained).abs().max()
    assert grad is not None and grad.abs().sum() > 0  # the gradient reaches below the 4-bit layers


def test_bitsandbytes_bf16_cpu_path_is_what_the_fix_avoids(tiny_path, model_4bit):
    """With bitsandbytes' own switch back on, the same sequence gives other numbers and gradients."""
    import bitsandbytes as bnb

    if not bnb.functional.has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never takes the repacked path here")
    ids = torch.tensor([[5, 17, 99, 300, 42, 7]])
    reference_logits, _, reference = _eval_then_train_grad(model_4bit, ids)
    repacking = load_causal_lm(tiny_path, quantization="4bit", dtype="float32", device=torch.device("cpu"),
                               quant_storage="bfloat16")
    for layer in _linear4bit_layers(repacking):
        layer.support_avx512bf16_for_cpu = True
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):
        evaluated, trained, grad = _eval_then_train_grad(repacking, ids)
    assert {layer.weight.dtype for layer in _linear4bit_layers(repacking)} == {torch.uint8}
    assert (evaluated - reference_logits).abs().max() > 1e-4  # the bf16 kernel's numbers
    assert (grad - reference).abs().max() > 0.1 * reference.abs().max()  # gradients lost below the layers
