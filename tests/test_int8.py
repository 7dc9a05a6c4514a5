"""8-bit base layers: the lean backward gives bitsandbytes' gradients and lets checkpointing free the inputs."""

from __future__ import annotations

import torch

from mathverify.model.memory import SavedActivations, module_tensors
from mathverify.model.module import VerifierModule

ROWS, TOKENS = 2, 64


def _module(tiny_path, checkpointing: bool) -> VerifierModule:
    torch.manual_seed(0)
    module = VerifierModule(backbone=tiny_path, quantization="8bit", lora_r=4, gradient_checkpointing=checkpointing)
    module.build(torch.device("cpu"))
    for name, param in module.named_parameters():
        if "lora_B" in name:  # B starts at zero: make every LoRA matrix get a gradient through the base layers
            param.data.normal_(0.0, 0.05)
    return module.train()


def _int8_layers(module):
    from bitsandbytes.nn import Linear8bitLt

    layers = [m for m in module.modules() if isinstance(m, Linear8bitLt)]
    assert layers and all(hasattr(m, "int8_forward") for m in layers)  # use_frozen_int8_backward ran at load
    return layers


def _bitsandbytes_backward(module) -> None:
    for layer in _int8_layers(module):
        layer.forward = layer.int8_forward  # bitsandbytes' own autograd Function again


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(10, 800, (ROWS, TOKENS))
    return ids, torch.full((ROWS,), TOKENS)


def _lora_grads(module) -> dict:
    ids, lengths = _batch()
    margin, _ = module.margins(ids, lengths, shared_prefix=0)
    margin.square().sum().backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad and p.grad is not None}


def test_lean_int8_backward_gives_bitsandbytes_gradients(tiny_path):
    ours = _lora_grads(_module(tiny_path, checkpointing=False))
    reference_module = _module(tiny_path, checkpointing=False)
    _bitsandbytes_backward(reference_module)
    reference = _lora_grads(reference_module)
    assert ours.keys() == reference.keys() and any("layers.0" in n and "lora_A" in n for n in ours)
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6, msg=name)


def _kept_per_token_layer(module) -> float:
    ids, lengths = _batch()
    counter = SavedActivations(module_tensors(module) + [ids, lengths])
    with counter:
        margin, _ = module.margins(ids, lengths, shared_prefix=0)
    hidden = module.model.get_base_model().config.hidden_size
    layers = module.model.get_base_model().config.num_hidden_layers
    kept = counter.live_bytes() / (ROWS * TOKENS * layers * hidden * 4)
    del margin
    return kept


def test_checkpointing_frees_the_8bit_layers_inputs(tiny_path):
    lean = _kept_per_token_layer(_module(tiny_path, checkpointing=True))
    stock = _module(tiny_path, checkpointing=True)
    _bitsandbytes_backward(stock)
    held = _kept_per_token_layer(stock)
    # with checkpointing: the layer's input (and, over both layers, the final norm's few tensors)
    assert lean <= 2.5, (lean, held)
    assert held >= lean + 3, (lean, held)  # each 8-bit linear's input: q/k/v's, o's, gate/up's, down's (2x wide)
