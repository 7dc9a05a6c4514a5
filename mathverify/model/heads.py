"""Heads that turn the last prompt position's hidden state into two logits [wrong, correct].

Neither head ever builds the [batch, seq, vocab] logits tensor (128k columns for Llama-3): the
label-token head multiplies one hidden state per row with just two rows of ``lm_head``.
"""

from __future__ import annotations

import torch
from torch import nn


def last_positions(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, H], lengths [B] (right padding) -> the last real position's state [B, H]."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, lengths.to(hidden.device) - 1]


class LabelTokenHead(nn.Module):
    """Scores the two label words' first tokens with the backbone's own ``lm_head`` rows.

    The result equals the full-vocabulary logits at ``(negative_id, positive_id)``, which is what the
    seed's generate-and-compare read, but costs 2 x H multiply-adds per row instead of V x H.
    It owns no parameters: ``lm_head`` stays where the backbone (and LoRA/modules_to_save) keep it.
    """

    def __init__(self, negative_id: int, positive_id: int) -> None:
        super().__init__()
        self.register_buffer("label_ids", torch.tensor([negative_id, positive_id]), persistent=False)

    def forward(self, last_hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        weight = lm_head.weight.index_select(0, self.label_ids.to(lm_head.weight.device))  # [2, H]
        logits = last_hidden.to(weight.dtype) @ weight.T  # [B, 2]
        bias = getattr(lm_head, "bias", None)
        if bias is not None:
            logits = logits + bias.index_select(0, self.label_ids.to(bias.device))
        return logits.float()


class ClassifierHead(nn.Module):
    """A linear layer on the last hidden state (kept in fp32, trained, saved with the adapter)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, last_hidden: torch.Tensor, lm_head: nn.Module | None = None) -> torch.Tensor:
        return self.linear(last_hidden.float())


class EvidenceHead(nn.Module):
    """What the other rows of the question say (``mathverify.evidence.index`` features), as log-odds.

    A small MLP maps the evidence vector [B, F] to a log-odds shift d [B]; training scores a row
    with P(True) = sigmoid(text margin + d), prediction with the fitted per-case weights of
    ``mathverify.model.combination``. The last layer starts at zero: before training the evidence
    changes nothing. Trained with the LoRA weights on the same loss (fp32, saved in checkpoints
    and exports).

    ``lowering``: positions of features that can only lower P(True) (a defect of the row itself,
    ``evidence.index.LOWERING``): d = min(net(x), net(x with those features at 0)), so a row with
    the defect never scores above the same row without it, however few training rows carried it.
    """

    def __init__(self, n_features: int, hidden: int = 32, lowering: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        keep = torch.ones(n_features)
        keep[list(lowering)] = 0.0
        self.lowering = tuple(lowering)
        self.register_buffer("keep", keep, persistent=False)  # [F]: 0 at the lowering features

    def forward(self, evidence: torch.Tensor) -> torch.Tensor:
        """evidence [B, F] -> shift d [B] (float32)."""
        x = evidence.to(self.net[0].weight.dtype)
        d = self.net(x)  # [B, 1]
        if self.lowering:  # the same row without its defects: the defect may only lower d
            d = torch.minimum(d, self.net(x * self.keep.to(x.dtype)))
        return d.float().reshape(-1)
