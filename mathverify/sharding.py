"""Splitting the fixed evaluation sets (validation, test, predict) across ranks, each row exactly once.

Handed a plain DataLoader, Lightning gives validation/test under DDP a ``DistributedSampler`` that
pads the ranks to equal length with repeated rows, so torchmetrics (which syncs exactly) would
count those rows twice. Lightning keeps any sampler that already is a ``DistributedSampler``, so
the loaders pass its unrepeated one: rank r takes rows r, r + W, r + 2W, ... (W = world size).
Ranks may then run one batch more or less than each other; that is safe for evaluation because
DDP only syncs buffers on the first forward after a training step, and every metric/log sync
happens once per epoch on every rank. Predict rows carry ``row_index``; the submission writer
sorts by it.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Optional

from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Sampler


def eval_sampler(rows: Sized, rank: int, world_size: int) -> Optional[Sampler]:
    """The sampler for ``rows`` on ``rank`` of ``world_size``; None (plain in-order loading) for one rank."""
    if world_size <= 1:
        return None
    if len(rows) < world_size:
        # A rank without a batch would skip the epoch-end metric sync and hang the others.
        raise ValueError(
            f"{len(rows)} evaluation rows cannot be split over {world_size} ranks (each needs at least one); "
            "evaluate with fewer devices"
        )
    return UnrepeatedDistributedSampler(rows, num_replicas=world_size, rank=rank, shuffle=False)


def rank_of(trainer) -> tuple[int, int]:
    """(global rank, world size) of a trainer; (0, 1) without one (loaders built outside a Trainer)."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)
