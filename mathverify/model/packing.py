"""Run a micro-batch's rows as one packed sequence: no pad token is ever computed.

A right-padded batch [B, T] computes B x T positions though only sum(lengths) are real; with
contest rows (~420 tokens on average, some past 1,024) a length-grouped micro-batch still pads,
and a GPU is fed B short sequences. Packing lays the real tokens end to end, [1, N] with
N = sum(lengths), and restarts ``position_ids`` at 0 for each row. transformers reads those resets
as packed sequences (``masking_utils.find_packed_sequence_indices``) and keeps attention inside each
row: a block-diagonal causal mask for ``sdpa`` / ``eager``, a block mask for ``flex_attention``
(which then skips the blocks between rows), and variable-length kernels for ``flash_attention_*``.
Each row's label is read at its own last token. Values and gradients equal the padded pass
(``tests/test_packing.py``, float64).

With ``sdpa`` the mask is materialised ([N, N] booleans) and attention costs N^2 rather than
sum(L_i^2): packing pays off with ``flex_attention`` or flash-attention, not with ``sdpa``.
"""

from __future__ import annotations

import torch
from torch import nn


def pack_rows(input_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids [B, T] right-padded, lengths [B] -> tokens [1, N], position_ids [1, N], last [B].

    ``last[i]`` is the packed index of row i's last real token.
    """
    batch, width = input_ids.shape
    positions = torch.arange(width, device=input_ids.device).expand(batch, width)  # [B, T]
    real = positions < lengths.to(input_ids.device)[:, None]  # [B, T]
    last = lengths.to(input_ids.device).cumsum(0) - 1  # [B]
    return input_ids[real][None], positions[real][None], last


def packed_last_hidden_states(decoder: nn.Module, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden state at each row's last real token, computed packed: [B, T] -> [B, H]."""
    tokens, positions, last = pack_rows(input_ids, lengths)
    hidden = decoder(input_ids=tokens, position_ids=positions, use_cache=False).last_hidden_state  # [1, N, H]
    return hidden[0, last]  # [B, H]
