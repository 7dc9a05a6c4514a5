"""Optimizer parameter groups: weight decay for matrices only."""

from __future__ import annotations

from typing import Optional

from torch import nn


def parameter_groups(module: nn.Module, leave_out: Optional[nn.Module] = None) -> list[dict]:
    """The trainable parameters in two groups: weight decay for matrices (LoRA A/B, linear
    weights), none for biases, norm scales and embeddings (HF Trainer and TRL's rule; decaying an
    RMSNorm scale pulls it towards zero, not towards its initial 1; HF Trainer exempts biases and
    norms, minGPT embeddings too). Empty groups are left out, and so are ``leave_out``'s parameters."""
    exempt: set[int] = set()  # a weight tied to an embedding (lm_head) counts as an embedding
    for owner in module.modules():
        owner_exempt = isinstance(owner, nn.Embedding) or "norm" in type(owner).__name__.lower()
        for name, param in owner.named_parameters(recurse=False):
            if owner_exempt or name.endswith("bias") or param.ndim < 2:
                exempt.add(id(param))
    left_out = {id(p) for p in leave_out.parameters()} if leave_out is not None else set()
    decay, no_decay = [], []
    for param in module.parameters():  # each parameter once, even when tied
        if param.requires_grad and id(param) not in left_out:
            (no_decay if id(param) in exempt else decay).append(param)
    groups = [{"params": decay, "name": "decay"}, {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]
