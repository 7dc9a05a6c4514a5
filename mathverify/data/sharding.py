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
import torch
from torch import Tensor
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


def gather_uneven(pl_module, local: Tensor) -> Tensor:
    """Concatenate a 1-D tensor over all ranks. Every rank must call this.

    ``all_gather`` needs equal shapes; ranks can hold different row counts (custom samplers), so
    pad to the longest and trim back.
    """
    if pl_module.trainer.world_size == 1:
        return local
    sizes = pl_module.all_gather(torch.tensor([local.numel()], device=local.device)).reshape(-1)
    padded = torch.zeros(int(sizes.max()), dtype=local.dtype, device=local.device)
    padded[: local.numel()] = local
    gathered = pl_module.all_gather(padded)  # [world_size, longest]
    return torch.cat([rank_rows[: int(size)] for rank_rows, size in zip(gathered, sizes)])


class EpochRows:
    """Per-row outputs of one validation/test epoch (1-D tensors by name), gathered across ranks once.

    A module adds each batch's rows in its ``*_step`` and exposes ``epoch_outputs()`` returning
    ``gathered(self)``; every callback that needs all rows (metrics, threshold, best-of-N) reads
    that one gathered copy. Every rank must call ``gathered`` (a collective) the same number of times.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._local: list[dict[str, Tensor]] = []
        self._gathered: Optional[dict[str, Tensor]] = None

    def add(self, **rows: Tensor) -> None:
        self._local.append({k: v.detach().reshape(-1) for k, v in rows.items()})

    def gathered(self, pl_module) -> dict[str, Tensor]:
        if self._gathered is None:
            if not self._local:  # eval_sampler gives every rank at least one row
                raise RuntimeError("no validation/test rows on this rank (a rank needs at least one batch)")
            local = {k: torch.cat([part[k] for part in self._local]) for k in self._local[0]}
            self._gathered = {k: gather_uneven(pl_module, v).cpu() for k, v in local.items()}
        return self._gathered
