"""A Llama MLP that keeps one [B, T, intermediate] tensor fewer alive for the backward pass.

``down_proj(silu(gate_proj(x)) * up_proj(x))`` as transformers writes it saves four tensors of the
intermediate width per layer (14,336 wide on Llama-3-8B): ``gate`` (for silu's backward),
``silu(gate)`` and ``up`` (for the product's) and the product (LoRA's ``lora_A`` of ``down_proj``
needs its input). ``SiluTimesUp`` saves only ``gate`` and ``up`` and recomputes ``silu(gate)`` in the
backward, one element-wise pass: 3 tensors instead of 4, the largest share of the activations a LoRA
step keeps (Llama MLPs are ~75 % of them). Values are the same operations, gradients the same formula.
"""

from __future__ import annotations

from types import MethodType

import torch
from torch import nn


class SiluTimesUp(torch.autograd.Function):
    """silu(gate) * up, saving only its two inputs."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[0]:  # PyTorch's fused silu backward, as the plain graph would run it
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        if ctx.needs_input_grad[1]:  # the one extra element-wise pass: silu(gate) again
            grad_up = grad * nn.functional.silu(gate)
        return grad_gate, grad_up


def _lean_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SiluTimesUp.apply(self.gate_proj(x), self.up_proj(x)))


def _is_silu(act: nn.Module) -> bool:
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"  # transformers' own class


def use_lean_mlp(model: nn.Module) -> int:
    """Give every gated-SiLU MLP (the Llama / Mistral / Qwen2 ``*MLP`` layout) the lean forward.

    Returns how many modules were changed (0 for other architectures, which keep their own forward).
    """
    count = 0
    parts = ("gate_proj", "up_proj", "down_proj", "act_fn")
    for module in model.modules():
        if (type(module).__name__.endswith("MLP") and all(hasattr(module, p) for p in parts)
                and _is_silu(module.act_fn)):
            module.forward = MethodType(_lean_mlp_forward, module)
            count += 1
    return count
