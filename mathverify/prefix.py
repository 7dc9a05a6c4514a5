"""Run the decoder over a right-padded batch, computing the tokens every row starts with only once.

Every prompt starts with the same instruction text (the seed template's ~80 tokens before the
question: ~20 % of a contest row), and rows of one question share the question too. Causal
attention makes the hidden states of a shared prefix independent of what follows, so the batch can
run as: prefix once (batch 1, keeping its keys/values), then each row's own tokens attending to that
prefix. The result equals the plain forward (up to float rounding); gradients reach the LoRA weights
through the prefix's keys/values, so it holds for training too.

Right padding also makes the attention mask unnecessary: a real token never attends to a later
position, so pads (always after a row's last real token) cannot change any position we read. With no
mask, SDPA runs its fused causal kernel instead of materialising a [B, heads, T, T] mask.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
from torch import nn

from .heads import last_positions


@lru_cache(maxsize=None)
def _cache_keyword(decoder_class: type) -> str:
    """transformers 5 names the key/value cache argument ``cache``; 4.x called it ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


def shared_prefix_length(input_ids: torch.Tensor, lengths: torch.Tensor) -> int:
    """Leading tokens identical in every row [B, T], leaving each row at least one token of its own."""
    same = (input_ids == input_ids[:1]).all(dim=0)  # [T]
    shared = int(same.long().cumprod(dim=0).sum())
    return max(0, min(shared, int(lengths.min()) - 1))


def last_hidden_states(decoder: nn.Module, input_ids: torch.Tensor, lengths: torch.Tensor,
                       min_shared: int = 0, shared: int | None = None) -> torch.Tensor:
    """Final-norm hidden state at each row's last real token: input_ids [B, T] right-padded -> [B, H].

    ``min_shared``: run the prefix once when the batch has at least 2 rows and shares at least this
    many leading tokens; 0 never does (one plain causal forward). ``shared``: the batch's
    ``shared_prefix_length`` if the collate function already counted it on the CPU (saves a device
    sync); computed here otherwise.
    """
    batch = input_ids.shape[0]
    if min_shared <= 0 or batch < 2:
        shared = 0
    elif shared is None:
        shared = shared_prefix_length(input_ids, lengths)
    if shared < max(min_shared, 1):
        hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state  # [B, T, H]
        return last_positions(hidden, lengths)
    keyword = _cache_keyword(type(decoder))
    prefix = decoder(input_ids=input_ids[:1, :shared], use_cache=True)
    cache = prefix.cache if hasattr(prefix, "cache") else prefix.past_key_values  # K/V per layer [1, kv, P, d]
    cache.batch_repeat_interleave(batch)  # -> [B, kv_heads, P, d], still in the autograd graph
    # Positions continue at P (read from the cache length); the causal mask is offset by P.
    hidden = decoder(input_ids=input_ids[:, shared:], use_cache=True, **{keyword: cache}).last_hidden_state
    return last_positions(hidden, lengths - shared)  # [B, H]
