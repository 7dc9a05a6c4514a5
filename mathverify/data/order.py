"""The order in which one rank reads the training source, pass by pass.

``shuffled`` (every part a plain CSV/JSON-lines file, see ``rowindex``): each pass is a seeded
permutation of this rank's rows (global row index % world size == rank) over the whole source, so a
file sorted by question still gives a round rows of many questions. A position in the pass is one
integer (rows of the permutation already read), and resuming reads from there at once: the
permutation is regenerated from (seed, pass) in milliseconds and each row is one ``pread``.

Hub datasets and ``save_to_disk`` folders (``ArrowSource``: memory-mapped Arrow in ``datasets``'
cache) get the same whole-source permutation, a row a gather away. Parquet parts are shuffled by
row groups and windows of rows (``parquet_order``), with the same one-integer position.

``file``: the rows in file order, every rank reading every row (the stream keeps its own); used
for compressed files, JSON arrays, mixed kinds of parts and the synthetic generator, which cannot
be read out of order cheaply. Resuming re-reads the pass up to the position.
"""

from __future__ import annotations

import sys
from typing import Iterator

import numpy as np

from mathverify.data.rowindex import RowReader, cached_digest_keys, seekable, text_index
from mathverify.data.sources import DataError, Part, arrow_dataset, iter_rows

SHUFFLED, FILE = "shuffled", "file"
ARROW_KINDS = ("hub", "arrow")
_NOTED: set = set()


def pass_permutation(rows: int, seed: int, passes: int) -> np.ndarray:
    """The order of ``rows`` items in pass ``passes`` (int32 when it fits: 4 bytes per row)."""
    order = np.random.default_rng([seed % 2**63, passes]).permutation(rows)
    return order.astype(np.int32) if rows < 2**31 else order


class IndexedSource:
    """A source that reads any row by its global index (part after part) through ``_rows``."""

    total: int

    def _rows(self, indices) -> Iterator[tuple[str, int, dict, int]]:
        raise NotImplementedError

    def read_many(self, indices: np.ndarray) -> list[tuple[str, int, dict]]:
        return [(name, number, row) for name, number, row, _ in self._rows(indices.tolist())]

    def pass_rows(self, rank: int, world_size: int, seed: int, passes: int,
                  start: int) -> Iterator[tuple[str, int, dict, int]]:
        """This rank's rows (index % world size == rank) in the pass's permutation, from entry ``start``."""
        mine = max(0, (self.total - rank + world_size - 1) // world_size)
        order = pass_permutation(mine, seed, passes)
        return self._rows(rank + world_size * int(order[j]) for j in range(start, mine))


class TextSource(IndexedSource):
    """Every row of plain CSV/JSON-lines parts by global row index, through their byte-offset index."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.indexes = [text_index(p) for p in parts]
        self.bounds = np.cumsum([0] + [ix.rows for ix in self.indexes])
        self.total = int(self.bounds[-1])

    def digest_keys(self) -> np.ndarray:
        return np.concatenate([ix.digest_keys for ix in self.indexes])

    def _rows(self, indices) -> Iterator[tuple[str, int, dict, int]]:
        reader = RowReader()
        try:
            for row_index in indices:
                part = int(np.searchsorted(self.bounds, row_index, side="right")) - 1
                k = row_index - int(self.bounds[part])
                yield self.parts[part].name, k + 1, reader.read(self.indexes[part], k), row_index
        finally:
            reader.close()


class ArrowSource(IndexedSource):
    """Every row of hub / ``save_to_disk`` parts by global row index: memory-mapped Arrow tables,
    gathered ``GATHER`` rows at a time (one Arrow ``take`` per part and block, not a row per call)."""

    GATHER = 256

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.data = [arrow_dataset(p) for p in parts]
        self.bounds = np.cumsum([0] + [len(d) for d in self.data])
        self.total = int(self.bounds[-1])

    def digest_keys(self) -> np.ndarray:
        def keys(data):
            def questions():
                for batch in data.select_columns(["question"]).iter(batch_size=32_768):
                    yield batch["question"]
            # the fingerprint changes with the dataset's content (a new download, another save)
            identity = ("arrow", data._fingerprint, len(data), tuple(f["filename"] for f in data.cache_files))
            return cached_digest_keys(identity, len(data), questions)

        return np.concatenate([keys(d) for d in self.data]) if self.data else np.empty(0, dtype=np.uint64)

    def _rows(self, indices) -> Iterator[tuple[str, int, dict, int]]:
        indices = iter(indices)
        while block := [int(i) for _, i in zip(range(self.GATHER), indices)]:
            where = np.searchsorted(self.bounds, block, side="right") - 1
            out: list = [None] * len(block)
            for p in np.unique(where).tolist():
                slots = np.nonzero(where == p)[0].tolist()
                local = [block[s] - int(self.bounds[p]) for s in slots]
                columns = self.data[p][local]  # {column: values in the order of ``local``}
                names = list(columns)
                for s, k, values in zip(slots, local, zip(*columns.values())):
                    out[s] = (self.parts[p].name, k + 1, dict(zip(names, values)), block[s])
            yield from out


def random_access(parts: list[Part]):
    """A source that reads rows out of order (TextSource, ParquetSource), or None."""
    if parts and all(seekable(p) for p in parts):
        return TextSource(parts)
    if parts and all(p.kind == "parquet" for p in parts):
        from mathverify.data.parquet_order import ParquetSource

        return ParquetSource(parts)
    if parts and all(p.kind in ARROW_KINDS for p in parts):
        return ArrowSource(parts)
    return None


def can_shuffle(parts: list[Part]) -> bool:
    return bool(parts) and (all(seekable(p) for p in parts) or all(p.kind == "parquet" for p in parts)
                            or all(p.kind in ARROW_KINDS for p in parts))


class ReadOrder:
    """Yields (part name, 1-based row number in the part, row, global row index) for one rank."""

    def __init__(self, parts: list[Part], rank: int, world_size: int, seed: int, shuffle: bool = True) -> None:
        self.parts, self.rank, self.world_size, self.seed = parts, rank, world_size, seed
        self.mode = SHUFFLED if shuffle and can_shuffle(parts) else FILE
        if shuffle and self.mode == FILE:
            _note_file_order(parts)
        # Built here, in the process that makes the loader: a loader worker inherits the index.
        self.source = random_access(parts) if self.mode == SHUFFLED else None

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
        yield from self.source.pass_rows(self.rank, self.world_size, self.seed, passes, start)


def _note_file_order(parts: list[Part]) -> None:
    slow = [p for p in parts if p.kind != "synthetic"]  # synthetic rows come shuffled
    key = tuple(p.name for p in slow)
    if slow and key not in _NOTED:
        _NOTED.add(key)
        print(f"mathverify: note: {slow[0].name}{' and others' if len(slow) > 1 else ''} cannot be read out of "
              "order (compressed, JSON array, or parts of different kinds mixed): training reads "
              "the source in file order, mixed only by the shuffle buffer, and resuming re-reads the current pass "
              "up to its position; for a file sorted by question, convert it to plain .jsonl/.csv or .parquet",
              file=sys.stderr)
