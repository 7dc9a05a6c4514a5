"""Model FLOPs per token, for Lightning's ``ThroughputMonitor`` (``VerifierModule.flops_per_batch``)."""

from __future__ import annotations

from torch import nn


def decoder_flops_per_token(decoder: nn.Module) -> int:
    """Training FLOPs per token of the decoder's matrices: 4 x frozen + 6 x trainable (in x out each)."""
    total = 0
    for module in decoder.modules():
        if next(module.children(), None) is None and hasattr(module, "in_features") and hasattr(module, "out_features"):
            trainable = any(p.requires_grad for p in module.parameters(recurse=False))
            total += (6 if trainable else 4) * module.in_features * module.out_features
    return total
