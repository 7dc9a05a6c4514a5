"""The training stream: endless, sharded by rank, shuffled in a buffer, exactly resumable.

Rows flow source (in the rank's reading order, see ``mathverify.data.order``: a seeded permutation of
the whole source per pass where the files allow it) -> (rank's share, not validation, readable) ->
buffer of ``buffer_size`` rows -> tokenized together -> (optionally) sorted by length and cut into
micro-batches -> batches in a seeded random order. Its position is a few integers
(:class:`StreamPosition`); every batch carries the position *after* it, so whoever consumed the
batch knows where to resume: seek to the buffer's first row (or, for a source read in file order,
re-read up to it), rebuild the same buffer, skip the batches already used.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import torch

from mathverify.data.examples import clean_row, collate_examples
from mathverify.data.order import FILE, ReadOrder
from mathverify.data.sources import DataError, Part
from mathverify.data.split import digest_fraction, question_digest
from mathverify.evidence.answers import answer_key
from mathverify.evidence.checks import flawed
from mathverify.evidence.index import row_key


@dataclass
class StreamPosition:
    """Where the training stream stands (plain integers, safe in a weights-only checkpoint)."""

    passes: int = 0  # full reads of the source completed
    rows_read: int = 0  # entries of this pass's reading order read before the current buffer began
    buffer_index: int = 0  # buffers started so far (seeds each buffer's shuffle)
    batches_done: int = 0  # batches already taken from the current buffer
    batch_size: int = 0  # the size those batches were cut at (0: this stream's own)
    earlier_cuts: list = field(default_factory=list)  # [batch size, batches taken] before a size change
    order: str = FILE  # this pass's reading order: shuffled (permuted rows of this rank) or file (every row)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ValidationRule:
    """Which questions belong to validation: a digest fraction, an explicit digest set, or both."""

    fraction: Optional[float] = None
    digests: frozenset = frozenset()
    held_out_rows: frozenset = frozenset()  # row keys (evidence.row_key) of the seen view's rows

    def is_validation(self, digest: str) -> bool:
        if digest in self.digests:
            return True
        return self.fraction is not None and digest_fraction(digest) < self.fraction


class TrainStream(torch.utils.data.IterableDataset):
    """Yields collated micro-batches; ``num_batches`` of them per iteration, or forever if None."""

    def __init__(self, parts: list[Part], encoder, pad_id: int, *, rank: int, world_size: int,
                 validation: ValidationRule, batch_size: int, buffer_size: int, group_by_length: bool,
                 seed: int, start: StreamPosition, num_batches: Optional[int], shuffle_source: bool = True,
                 evidence=None) -> None:
        super().__init__()
        self.parts, self.encoder, self.pad_id = parts, encoder, pad_id
        self.rank, self.world_size, self.validation = rank, world_size, validation
        self.batch_size, self.buffer_size = batch_size, max(buffer_size, batch_size)
        self.group_by_length, self.seed = group_by_length, seed
        self.start, self.num_batches = start, num_batches
        self.order = ReadOrder(parts, rank, world_size, seed, shuffle_source)
        self.evidence = evidence  # evidence.TrainingEvidence or None

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("endless stream")  # Lightning treats this as an infinite loader
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        order = self.order
        pos = self._rebased(StreamPosition(**self.start.as_dict()))
        if pos.rows_read == 0 and pos.batches_done == 0 and not pos.earlier_cuts:
            pos.order = order.mode  # a pass not begun yet takes this run's order; a begun one keeps its own
        source = order.rows(pos.passes, pos.rows_read, pos.order)  # one live reader, re-opened per pass
        produced = 0
        while self.num_batches is None or produced < self.num_batches:
            batches, rows_after, skipped, truncated = self._buffer(pos, source)
            if pos.batches_done or pos.earlier_cuts:  # a rebuilt buffer: its counts went out already
                skipped, truncated = Counter(), 0
            for batch in batches[pos.batches_done:]:
                pos.batches_done += 1
                done = pos.batches_done == len(batches)
                after = self._next_buffer(pos, rows_after) if done else pos
                batch["stream"] = {"position": after.as_dict(), "skipped": dict(skipped),
                                   "truncated": truncated, "rows": len(batch["ids"])}
                skipped, truncated = Counter(), 0
                yield batch
                produced += 1
                if self.num_batches is not None and produced >= self.num_batches:
                    return
            pos = self._next_buffer(pos, rows_after)
            if rows_after is None:
                source = order.rows(pos.passes, 0, pos.order)

    def _rebased(self, pos: StreamPosition) -> StreamPosition:
        """A round with another micro-batch size continues the same buffer: the rows already
        taken (cut at the old size) are set aside, the rest is cut at the new size."""
        if pos.batch_size in (0, self.batch_size) or pos.batches_done == 0:
            return StreamPosition(pos.passes, pos.rows_read, pos.buffer_index, pos.batches_done,
                                  self.batch_size, list(pos.earlier_cuts), pos.order)
        cuts = list(pos.earlier_cuts) + [[pos.batch_size, pos.batches_done]]
        return StreamPosition(pos.passes, pos.rows_read, pos.buffer_index, 0, self.batch_size, cuts, pos.order)

    def _next_buffer(self, pos: StreamPosition, rows_after: Optional[int]) -> StreamPosition:
        if rows_after is None:  # the source ran out inside this buffer: the next one starts a new pass
            return StreamPosition(pos.passes + 1, 0, pos.buffer_index + 1, 0, self.batch_size, order=self.order.mode)
        return StreamPosition(pos.passes, rows_after, pos.buffer_index + 1, 0, self.batch_size, order=pos.order)

    def _buffer(self, pos: StreamPosition, source: Iterator):
        """Rebuild the buffer that starts at ``pos``: (batches, rows read after it or None, skips, cuts)."""
        rows, skipped = [], Counter()
        index = pos.rows_read
        rows_after = None
        for name, number, raw, row_index in source:
            index += 1
            if row_index % self.world_size != self.rank:  # a file-order source yields every rank's rows
                continue
            if not isinstance(raw.get("question"), str):
                skipped["non-text question"] += 1
                continue
            digest = question_digest(raw["question"])
            if self.validation.is_validation(digest):
                continue
            row, reason, _ = clean_row(raw, need_label=True)
            if row is None:
                skipped[reason] += 1
                continue
            held_out = self.validation.held_out_rows
            if held_out and row_key(row["question"], row["answer"], row["solution"]) in held_out:
                continue
            if self.evidence is not None:  # seeded by the row, so a resumed pass draws the same
                row["evidence"] = self.evidence(digest, answer_key(row["answer"]), row["label"], pos.passes, row_index,
                                                flawed(row["solution"], row["answer"]))
            row["row_index"] = row_index
            row["id"] = f"{name}:{number}"
            rows.append(row)
            if len(rows) >= self.buffer_size:
                rows_after = index
                break
        if not rows:
            if pos.rows_read == 0:
                names = ", ".join(p.name for p in self.parts)
                raise DataError(f"training stream: no usable training rows for rank {self.rank} in {names}")
            return [], None, skipped, 0
        ids, truncated = self.encoder.encode(rows)
        return self._batches(rows, ids, pos), rows_after, skipped, truncated

    def _batches(self, rows: list[dict], ids: list[list[int]], pos: StreamPosition) -> list[dict]:
        examples = [dict(input_ids=i, label=r["label"], row_index=r["row_index"], id=r["id"],
                         **({"evidence": r["evidence"]} if "evidence" in r else {}))
                    for i, r in zip(ids, rows)]
        rng = random.Random(f"{self.seed}:{pos.passes}:{pos.buffer_index}")
        rng.shuffle(examples)
        for size, taken in [*pos.earlier_cuts, [self.batch_size, 0]]:
            if self.group_by_length:  # similar lengths share a batch: less padding
                examples.sort(key=lambda e: len(e["input_ids"]))
            chunks = [examples[i:i + size] for i in range(0, len(examples), size)]
            rng.shuffle(chunks)
            examples = [e for chunk in chunks[taken:] for e in chunk]
        return [collate_examples(c, self.pad_id) for c in chunks]
