"""The order in which one rank reads the training source, pass by pass.

``shuffled`` (every part a plain CSV/JSON-lines file, see ``rowindex``): each pass is a seeded
permutation of this rank's rows (global row index % world size == rank) over the whole source, so a
file sorted by question still gives a round rows of many questions. A position in the pass is one
integer (rows of the permutation already read), and resuming reads from there at once: the
permutation is regenerated from (seed, pass) in milliseconds and each row is one ``pread``.

``file``: the rows in file order, every rank reading every row (the stream keeps its own); used
for compressed files, JSON arrays, Parquet, hub datasets and the synthetic generator, which cannot
be read out of order cheaply. Resuming re-reads the pass up to the position.
"""

from __future__ import annotations

import sys
from typing import Iterator

import numpy as np

from mathverify.rowindex import RowReader, seekable, text_index
from mathverify.sources import DataError, Part, iter_rows

SHUFFLED, FILE = "shuffled", "file"
_NOTED: set = set()


def pass_permutation(rows: int, seed: int, passes: int) -> np.ndarray:
    """The order of ``rows`` items in pass ``passes`` (int32 when it fits: 4 bytes per row)."""
    order = np.random.default_rng([seed % 2**63, passes]).permutation(rows)
    return order.astype(np.int32) if rows < 2**31 else order


class ReadOrder:
    """Yields (part name, 1-based row number in the part, row, global row index) for one rank."""

    def __init__(self, parts: list[Part], rank: int, world_size: int, seed: int, shuffle: bool = True) -> None:
        self.parts, self.rank, self.world_size, self.seed = parts, rank, world_size, seed
        self.mode = SHUFFLED if shuffle and parts and all(seekable(p) for p in parts) else FILE
        if shuffle and self.mode == FILE:
            _note_file_order(parts)

    def rows(self, passes: int, start: int, mode: str = "") -> Iterator[tuple[str, int, dict, int]]:
        """The rows of pass ``passes`` from entry ``start`` on, in ``mode`` (default: this order's)."""
        mode = mode or self.mode
        if mode == FILE:
            for offset, (name, number, row) in enumerate(iter_rows(self.parts, start=start)):
                yield name, number, row, start + offset
            return
        if self.mode != SHUFFLED:
            raise DataError("training stream: the saved position is in shuffled order, but "
                            f"{', '.join(p.name for p in self.parts)} cannot be read out of order")
        indexes = [text_index(p) for p in self.parts]
        bounds = np.cumsum([0] + [ix.rows for ix in indexes])
        mine = max(0, (int(bounds[-1]) - self.rank + self.world_size - 1) // self.world_size)
        order = pass_permutation(mine, self.seed, passes)
        reader = RowReader()
        try:
            for j in range(start, mine):
                row_index = self.rank + self.world_size * int(order[j])
                part = int(np.searchsorted(bounds, row_index, side="right")) - 1
                k = row_index - int(bounds[part])
                yield self.parts[part].name, k + 1, reader.read(indexes[part], k), row_index
        finally:
            reader.close()


def _note_file_order(parts: list[Part]) -> None:
    slow = [p for p in parts if p.kind != "synthetic" and not seekable(p)]  # synthetic rows come shuffled
    key = tuple(p.name for p in slow)
    if slow and key not in _NOTED:
        _NOTED.add(key)
        print(f"mathverify: note: {slow[0].name}{' and others' if len(slow) > 1 else ''} cannot be read out of "
              "order (compressed, Parquet, JSON array or hub dataset): training reads the source in file order, "
              "mixed only by the shuffle buffer, and resuming re-reads the current pass up to its position; "
              "for a file sorted by question, convert it to plain .csv or .jsonl", file=sys.stderr)
