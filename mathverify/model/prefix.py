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
from contextlib import contextmanager
from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from .heads import last_positions


try:  # the per-layer cache API (transformers >= 4.56; the ``cache`` keyword is 5.x)
    from transformers.cache_utils import Cache, DynamicLayer
except ImportError:  # pragma: no cover - older transformers: every batch takes the plain forward
    Cache = DynamicLayer = None


if DynamicLayer is not None:
    class ReadOnlyPrefixLayer(DynamicLayer):
        """One layer's prefix keys/values [B, kv_heads, P, d] that attention reads but never extends.

        transformers' DynamicLayer appends each call's keys; a gradient-checkpointed layer runs twice
        (forward, then again in the backward), so it must find the same prefix both times.
        """

        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()
            self.keys, self.values = keys, values
            self.device, self.dtype, self.is_initialized = keys.device, keys.dtype, True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def _checkpointing_modules(decoder: nn.Module) -> list[nn.Module]:
    """The decoder and its layers if this call checkpoints (training, gradients on, checkpointing on)."""
    if not (decoder.training and torch.is_grad_enabled()):
        return []
    return [m for m in decoder.modules() if getattr(m, "gradient_checkpointing", False) is True]


@contextmanager
def _attribute_set(modules: list[nn.Module], name: str, value):
    """Set ``name`` on each module for the duration of the block, then put back what was there."""
    missing = object()
    old = [m.__dict__.get(name, missing) for m in modules]
    for m in modules:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, previous in zip(modules, old):
            if previous is missing:
                m.__dict__.pop(name, None)
            else:
                setattr(m, name, previous)


@lru_cache(maxsize=None)
def _supports_prefix_cache(decoder_class: type) -> bool:
    """transformers 5 decoders take ``cache=``; older ones (``past_key_values=``) take the plain path."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return (DynamicLayer is not None and "cache" in inspect.signature(decoder_class.forward).parameters
            and hasattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache"))


def shared_prefix_length(input_ids: torch.Tensor, lengths: torch.Tensor) -> int:
    """Leading tokens identical in every row [B, T], leaving each row at least one token of its own."""
    same = (input_ids == input_ids[:1]).all(dim=0)  # [T]
    shared = int(same.long().cumprod(dim=0).sum())
    return max(0, min(shared, int(lengths.min()) - 1))


def _prefix_to_share(rows: int, shared: int, min_shared: int) -> int:
    """How many leading tokens to run once: ``shared`` if the batch qualifies, else 0."""
    return shared if min_shared > 0 and rows > 1 and shared >= min_shared else 0


def computed_tokens(lengths: torch.Tensor, shared: int, min_shared: int, decoder: Optional[nn.Module] = None) -> int:
    """Token positions ``last_hidden_states`` runs for a batch (real tokens, the prefix counted once).

    ``decoder``: count as this decoder runs; one without the ``cache=`` keyword (older transformers)
    takes the plain pass, where every real token is computed."""
    if decoder is not None and not _supports_prefix_cache(type(decoder)):
        min_shared = 0
    rows = int(lengths.numel())
    return int(lengths.sum()) - (rows - 1) * _prefix_to_share(rows, shared, min_shared)


def last_hidden_states(decoder: nn.Module, input_ids: torch.Tensor, lengths: torch.Tensor,
                       min_shared: int = 0, shared: int | None = None) -> torch.Tensor:
    """Final-norm hidden state at each row's last real token: input_ids [B, T] right-padded -> [B, H].

    ``min_shared``: run the prefix once when the batch has at least 2 rows and shares at least this
    many leading tokens; 0 never does (one plain causal forward). ``shared``: the batch's
    ``shared_prefix_length`` if the collate function already counted it on the CPU (saves a device
    sync); computed here otherwise.
    """
    batch = input_ids.shape[0]
    if shared is None and min_shared > 0 and batch > 1:
        shared = shared_prefix_length(input_ids, lengths)
    shared = _prefix_to_share(batch, shared or 0, min_shared)
    if not shared or not _supports_prefix_cache(type(decoder)):
        return _plain_last_hidden_states(decoder, input_ids, lengths)
    checkpointing = _checkpointing_modules(decoder)
    # The prefix (1 x P tokens) runs without checkpointing: its activations are small, and its cache
    # must be filled, which checkpointing refuses (use_cache is forced off).
    with _attribute_set(checkpointing, "gradient_checkpointing", False):
        prefix = decoder(input_ids=input_ids[:1, :shared], use_cache=True).cache  # K/V per layer [1, kv, P, d]
    if prefix is None or any(type(layer) is not DynamicLayer for layer in prefix.layers):
        return _plain_last_hidden_states(decoder, input_ids, lengths)  # e.g. sliding-window layers
    layers = [ReadOnlyPrefixLayer(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
              for layer in prefix.layers]  # a view per row: no copy; still in the autograd graph
    # Checkpointed layers may keep a read-only cache: their recompute sees the same prefix.
    checkpointed = [m for m in checkpointing if hasattr(type(m), "_can_checkpoint_with_cache")]
    with _attribute_set(checkpointed, "_can_checkpoint_with_cache", True):
        # Positions continue at P (read from the cache length); the causal mask is offset by P.
        hidden = decoder(input_ids=input_ids[:, shared:], cache=Cache(layers=layers), use_cache=True)
    return last_positions(hidden.last_hidden_state, lengths - shared)  # [B, H]


def _plain_last_hidden_states(decoder: nn.Module, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state  # [B, T, H]
    return last_positions(hidden, lengths)
