"""Shuffled reading of Parquet files: row groups in a seeded order, shuffled together in windows.

A Parquet file can only be read a row group at a time, so the unit is the row group: each pass
permutes the row groups of all files (seeded by the pass) and packs them, in that order, into
windows of at least ``WINDOW_ROWS`` rows; a window is read (one Arrow table per row group, about
``WINDOW_ROWS`` x row size in memory) and its rows are taken in a seeded random order. A row group
larger than a window is read in pieces of ``WINDOW_ROWS`` rows, in file order, each piece its own
window: such files mix less (write them with ``row_group_size`` of a few thousand rows), and a
resume inside one re-reads that row group (never the whole pass) up to the position.

The index is the Parquet footers (row group sizes: nothing stored per row) plus, for the
validation split, a 64-bit key per row's question digest (8 MB at one million rows).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from mathverify.data.sources import DataError, Part, _one_line

WINDOW_ROWS = 32_768


def _rank_count(start: int, stop: int, rank: int, world_size: int) -> int:
    """How many of the global row indices start..stop-1 belong to ``rank`` (index % world == rank)."""
    def below(x: int) -> int:
        return max(0, (x - rank + world_size - 1) // world_size)
    return below(stop) - below(start)


class ParquetSource:
    """Every row of a list of Parquet parts, by global row index (part after part)."""

    def __init__(self, parts: list[Part]) -> None:
        import pyarrow.parquet as pq

        self.parts = parts
        self.groups: list[tuple[int, int, int, int]] = []  # (part, row group, global start, rows)
        self.part_starts: list[int] = []
        total = 0
        for p, part in enumerate(parts):
            self.part_starts.append(total)
            meta = self._guard(part, lambda: pq.ParquetFile(part.arg).metadata)
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    self.groups.append((p, g, total, rows))
                    total += rows
        self.total = total
        self._files: dict[int, object] = {}
        self._live: Optional[tuple] = None  # (part, group, next offset, batch iterator, unread rows)

    @staticmethod
    def _guard(part: Part, read):
        try:
            return read()
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{part.name}: unreadable Parquet ({type(err).__name__}: {_one_line(err)})") from None

    def _file(self, p: int):
        import pyarrow.parquet as pq

        if p not in self._files:
            self._files[p] = self._guard(self.parts[p], lambda: pq.ParquetFile(self.parts[p].arg))
        return self._files[p]

    # ----- units and windows ------------------------------------------------------------------
    def _units(self, passes: int, seed: int) -> list[tuple[int, int, int, int, int]]:
        """This pass's read units in order: (part, group, offset in group, rows, global start)."""
        order = np.random.default_rng([seed % 2**63, passes]).permutation(len(self.groups))
        units = []
        for i in order.tolist():
            p, g, start, rows = self.groups[i]
            for offset in range(0, rows, WINDOW_ROWS if rows > WINDOW_ROWS else rows):
                units.append((p, g, offset, min(rows - offset, WINDOW_ROWS), start + offset))
        return units

    @staticmethod
    def _windows(units) -> list[list]:
        windows, current, rows = [], [], 0
        for unit in units:
            current.append(unit)
            rows += unit[3]
            if rows >= WINDOW_ROWS:
                windows.append(current)
                current, rows = [], 0
        return windows + ([current] if current else [])

    def _read_unit(self, unit):
        p, g, offset, rows, _ = unit
        handle = self._file(p)
        if offset == 0 and rows == handle.metadata.row_group(g).num_rows:
            return self._guard(self.parts[p], lambda: handle.read_row_group(g))
        import pyarrow as pa

        live = self._live
        if live is None or live[:3] != (p, g, offset):  # a seek: read this row group from its start
            live, skip = (p, g, 0, handle.iter_batches(batch_size=WINDOW_ROWS, row_groups=[g]), None), offset
        else:
            skip = 0
        batches, pieces = live[3], [live[4]] if live[4] is not None and live[4].num_rows else []
        taken = sum(piece.num_rows for piece in pieces)
        while taken < skip + rows:
            batch = self._guard(self.parts[p], lambda: next(batches))
            if taken + batch.num_rows <= skip:  # wholly before the piece: not kept
                skip -= batch.num_rows
                continue
            pieces.append(batch)
            taken += batch.num_rows
        table = pa.concat_tables([x if isinstance(x, pa.Table) else pa.Table.from_batches([x]) for x in pieces])
        self._live = (p, g, offset + rows, batches, table.slice(skip + rows))
        return table.slice(skip, rows)

    # ----- reading ----------------------------------------------------------------------------
    def pass_rows(self, rank: int, world_size: int, seed: int, passes: int,
                  start: int) -> Iterator[tuple[str, int, dict, int]]:
        """(part name, row number in part, row, global row index) of this rank's pass, from entry ``start``."""
        done = 0
        for number, window in enumerate(self._windows(self._units(passes, seed))):
            mine = sum(_rank_count(u[4], u[4] + u[3], rank, world_size) for u in window)
            if done + mine <= start:
                done += mine
                continue
            tables = [self._read_unit(u) for u in window]
            where = [(t, u, k) for t, u in zip(range(len(window)), window) for k in range(u[3])]
            order = np.random.default_rng([seed % 2**63, passes, number]).permutation(len(where))
            for i in order.tolist():
                t, unit, k = where[i]
                row_index = unit[4] + k
                if row_index % world_size != rank:
                    continue
                done += 1
                if done <= start:
                    continue
                yield self._row(tables[t], unit, k, row_index)

    def _row(self, table, unit, k: int, row_index: int):
        p = unit[0]
        return self.parts[p].name, row_index - self.part_starts[p] + 1, table.slice(k, 1).to_pylist()[0], row_index

    def digest_keys(self) -> np.ndarray:
        """Each row's question key (uint64, 8 bytes a row), part by part; a part's keys are cached
        by path, size and modification time (``rowindex.cached_digest_keys``)."""
        return np.concatenate([self._part_keys(p) for p in range(len(self.parts))]) if self.parts \
            else np.empty(0, dtype=np.uint64)

    def _part_keys(self, p: int) -> np.ndarray:
        import os

        from mathverify.data.rowindex import cached_digest_keys

        part, handle = self.parts[p], self._file(p)
        stat = os.stat(part.arg)

        def questions():  # the question column only, a batch at a time
            batches = iter(handle.iter_batches(columns=["question"], batch_size=WINDOW_ROWS))
            while (batch := self._guard(part, lambda: next(batches, None))) is not None:
                yield batch.column(0).to_pylist()

        identity = ("parquet", os.path.abspath(part.arg), stat.st_size, stat.st_mtime_ns)
        return cached_digest_keys(identity, handle.metadata.num_rows, questions)

    def read_many(self, indices: np.ndarray) -> list[tuple[str, int, dict]]:
        """Rows at sorted global indices, each row group read once."""
        out, g, cached = [], 0, None
        for row_index in indices.tolist():
            while self.groups[g][2] + self.groups[g][3] <= row_index:
                g += 1
            p, group, start, rows = self.groups[g]
            if cached is None or cached[0] != g:
                cached = (g, self._guard(self.parts[p], lambda: self._file(p).read_row_group(group)))
            name, number, row, _ = self._row(cached[1], (p, group, 0, rows, start), row_index - start, row_index)
            out.append((name, number, row))
        return out
