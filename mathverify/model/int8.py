"""Frozen 8-bit (LLM.int8) linears whose backward keeps nothing per token.

bitsandbytes' int8 matmuls (``MatMul8bitLt`` on CUDA, ``MatMul8bitFp`` on CPU) keep their input on
``ctx`` for a weight gradient that a frozen base never needs, and keep it past gradient
checkpointing (which only intercepts ``save_for_backward``): every 8-bit linear held its input
[tokens, in_features] until the backward, 7.5 hidden vectors per token and layer of Llama-3-8B
(a 4 x 2,048-token step: ~15 GiB of a ~28 GiB peak; docs/memory.md). A frozen weight needs only
the input gradient, ``grad @ dequantize(W)``, which is what bitsandbytes computes too (same
operations): here the forward runs bitsandbytes' own int8 path with autograd off, and the backward
dequantizes the weight (a [out, in] temporary, as bitsandbytes' does).
"""

from __future__ import annotations

from types import MethodType

import torch
from torch import nn


class FrozenInt8Backward(torch.autograd.Function):
    """y = layer(x) with bitsandbytes' forward; dx = dy @ (CB * SCB / 127). Saves no tensor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: nn.Module, int8_forward) -> torch.Tensor:
        ctx.layer, ctx.shape, ctx.dtype = layer, x.shape, x.dtype  # the layer: a reference, not a copy
        return int8_forward(x)  # autograd is off inside a Function's forward: nothing is saved

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        state = ctx.layer.state
        weight = state.CB.to(ctx.dtype, copy=True).mul_(state.SCB.unsqueeze(1).mul(1.0 / 127.0))  # [out, in]
        grad = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        return torch.matmul(grad, weight).view(ctx.shape), None, None


def _frozen_int8_forward(self, x: torch.Tensor) -> torch.Tensor:
    trains_bias = self.bias is not None and self.bias.requires_grad  # lora_bias "all" on a model with biases
    if torch.is_grad_enabled() and x.requires_grad and not trains_bias and not self.weight.requires_grad:
        return FrozenInt8Backward.apply(x, self, self.int8_forward)
    return self.int8_forward(x)


def use_frozen_int8_backward(model: nn.Module) -> int:
    """Give every bitsandbytes ``Linear8bitLt`` of ``model`` the lean backward (when its weight is
    frozen, checked at each call). Returns the number of layers changed."""
    try:
        from bitsandbytes.nn import Linear8bitLt
    except ImportError:  # pragma: no cover - no 8-bit layers without bitsandbytes
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, Linear8bitLt) and not hasattr(module, "int8_forward"):
            module.int8_forward = module.forward  # bitsandbytes' own (bound) forward
            module.forward = MethodType(_frozen_int8_forward, module)
            count += 1
    return count
