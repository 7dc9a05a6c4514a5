"""Every rank's random generators in a checkpoint, so a resumed run draws what it would have drawn.

LoRA dropout (and anything else random in a step) reads the CPU generator, or on a GPU the CUDA
generator of the rank's own device. A checkpoint is written by rank 0 alone, so each rank's states
are gathered first (``capture``, called on every rank, as all of them build the checkpoint) and
each rank restores its own (``restore``). Numpy's generator is not used by training; it is left out.
"""

from __future__ import annotations

import random
from typing import Optional

import torch
import torch.distributed as dist


def _local_state(device: Optional[torch.device]) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device is not None and device.type == "cuda":  # only this rank's device: no context on the others
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def capture(device: Optional[torch.device] = None) -> dict:
    """``{"per_rank": [state of rank 0, rank 1, ...]}``; a collective when several ranks run."""
    local = _local_state(device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, local)
        return {"per_rank": states}
    return {"per_rank": [local]}


def restore(saved: dict, rank: int = 0, device: Optional[torch.device] = None) -> None:
    """Set this rank's generators from ``capture``'s result (or the older one-state form)."""
    states = saved.get("per_rank") or [saved]
    state = states[rank] if rank < len(states) else states[0]  # README: N ranks resume on N ranks
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(value):
    """random.setstate wants the nested tuples that a checkpoint round trip may turn into lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
