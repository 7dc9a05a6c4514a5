"""Random access to the rows of plain CSV and JSON-lines files: a byte offset per row.

One sequential pass per file (saved in the cache folder, keyed by path, size and modification time) records
where each row starts, so a row can be read later with one ``pread`` and parsed by the same code
that reads the file in order (``sources.parse_csv`` / ``parse_json``: identical rows, identical
bad-row reasons with the same line numbers). The pass also keeps a 64-bit key of each row's
question digest, which lets the validation split look at every question without keeping rows.

Size at one million rows: 4 bytes per offset (8 for files over 4 GiB) + 8 bytes per digest key,
about 12 MB, plus a line-number checkpoint every 256 rows (for messages). Compressed files, JSON
arrays, Parquet, hub datasets and the synthetic generator are not indexed (``seekable`` is False):
they are read in order.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from mathverify.data.sources import _COMPRESSED, BAD_ROW, FIELD_LIMIT, DataError, Part, _is_json_array, parse_csv, parse_json
from mathverify.data.split import question_digest

CHECKPOINT = 256  # rows between line-number checkpoints
_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_AFTER_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


@dataclass(frozen=True)
class TextIndex:
    """Where each row of one text file starts (``offsets[k]``; ``offsets[rows]`` is the end)."""

    path: str
    kind: str  # csv | json
    header: tuple  # CSV header (empty for JSON lines)
    offsets: np.ndarray
    lines: np.ndarray  # physical lines before row k * CHECKPOINT
    digest_keys: np.ndarray  # first 16 hex digits of each row's question digest, as uint64

    @property
    def rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.lines.nbytes + self.digest_keys.nbytes


def seekable(part: Part) -> bool:
    """True for an uncompressed CSV or JSON-lines file (rows can be read out of order)."""
    if part.kind not in ("csv", "json") or part.arg.lower().endswith(_COMPRESSED):
        return False
    return part.kind == "csv" or not _is_json_array(part.arg)


_CACHE: dict[tuple, TextIndex] = {}
_FORMAT = 1  # of the saved index files; a change here rebuilds them


def text_index(part: Part) -> TextIndex:
    """The index of a seekable part: from this process's memory, else from the cache folder
    (``$MATHVERIFY_CACHE/row-index``, keyed by path, size and modification time), else built."""
    stat = os.stat(part.arg)
    key = (os.path.abspath(part.arg), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        saved = _saved_path(key)
        _CACHE[key] = _load(saved, part) or _save(saved, _build(part, stat.st_size))
    return _CACHE[key]


def _saved_path(key: tuple, folder: str = "row-index", suffix: str = ".npz") -> Path:
    """The cache file of ``key`` (a file's or dataset's identity) in ``$MATHVERIFY_CACHE/folder``."""
    from mathverify.model.backbone import cache_root

    name = hashlib.sha1(repr((key, _FORMAT)).encode("utf-8", "surrogatepass")).hexdigest()
    return cache_root() / folder / f"{name}{suffix}"


def _load(path: Path, part: Part) -> Optional[TextIndex]:
    try:
        with np.load(path) as saved:
            return TextIndex(part.arg, str(saved["kind"]), tuple(str(h) for h in saved["header"]),
                             saved["offsets"], saved["lines"], saved["digest_keys"])
    except Exception:  # missing or unreadable: build it again
        return None


def _save(path: Path, index: TextIndex) -> TextIndex:
    from mathverify.atomic import atomic_file

    try:  # a cache only: a read-only or full disk costs a rebuild next time, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as handle:
            np.savez(handle, kind=np.array(index.kind), header=np.array(index.header, dtype=str),
                     offsets=index.offsets, lines=index.lines, digest_keys=index.digest_keys)
    except OSError:
        pass
    return index


def digest_key(question) -> int:
    return int(question_digest(question if isinstance(question, str) else "")[:16], 16)


def cached_digest_keys(identity: tuple, rows: int, question_batches: Callable[[], Iterator[list]]) -> np.ndarray:
    """Each row's question key (uint64) of a Parquet file or Arrow dataset, computed from its
    question column (``question_batches()``: lists of questions, in row order) and cached in
    ``$MATHVERIFY_CACHE/question-keys`` under ``identity`` (what changes when the rows do: path,
    size and modification time; a dataset's fingerprint). 7.6 s per million rows to compute, a
    fraction of a second to load."""
    from mathverify.atomic import atomic_file

    saved = _saved_path(identity, "question-keys", ".npy")
    try:
        keys = np.load(saved)
        if len(keys) == rows:
            return keys
    except (OSError, ValueError):
        pass
    chunks = [np.array([digest_key(q) for q in batch], dtype=np.uint64) for batch in question_batches()]
    keys = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    try:  # a cache only: a read-only or full disk costs the computation next time, nothing else
        saved.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(saved, "wb") as handle:
            np.save(handle, keys)
    except OSError:
        pass
    return keys


def _binary_lines(handle, counter: list) -> Iterator[str]:
    """Decoded lines split as ``open(newline="")`` splits them (\\n, \\r\\n, lone \\r); counter[0]
    is the number of bytes handed out, counter[1] the number of lines."""
    first = True
    for raw in handle:
        pieces = [raw] if b"\r" not in raw or raw.endswith(b"\r\n") and raw.count(b"\r") == 1 \
            else [p for p in _AFTER_LONE_CR.split(raw) if p]
        for piece in pieces:
            counter[0] += len(piece)
            counter[1] += 1
            if first and piece.startswith(_BOM):
                piece = piece[len(_BOM):]
            first = False
            yield piece.decode("utf-8", "replace")


def _build(part: Part, size: int) -> TextIndex:
    offsets, lines, keys = [], [], []
    counter = [0, 0]
    header: list[str] = []
    with open(part.arg, "rb") as handle:
        source = _binary_lines(handle, counter)
        if part.kind == "csv":
            csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
            header = next(csv.reader(source, strict=True), None) or []  # the probe saw rows
            rows = parse_csv(source, part.arg, header=header, lines_before=counter[1])
        else:
            rows = parse_json(source)
        while True:
            start, line = counter[0], counter[1]
            row = next(rows, None)
            if row is None:
                break
            if len(offsets) % CHECKPOINT == 0:
                lines.append(line)
            offsets.append(start)
            keys.append(digest_key(row.get("question")))
    offsets.append(size)
    dtype = np.uint32 if size < 2**32 else np.uint64
    return TextIndex(part.arg, part.kind, tuple(header), np.asarray(offsets, dtype=dtype),
                     np.asarray(lines, dtype=np.uint64), np.asarray(keys, dtype=np.uint64))


class RowReader:
    """Reads single rows of indexed parts by number; keeps one file descriptor per file open."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def read(self, index: TextIndex, k: int) -> dict:
        """Row ``k`` (0-based) of the file, exactly as reading the file in order yields it."""
        start, end = int(index.offsets[k]), int(index.offsets[k + 1])
        fd = self._fds.get(index.path)
        if fd is None:
            fd = self._fds[index.path] = os.open(index.path, os.O_RDONLY)
        data = os.pread(fd, end - start, start)
        if start == 0 and data.startswith(_BOM):
            data = data[len(_BOM):]
        row = self._parse(index, data, 0)
        if row is not None and BAD_ROW in row:  # rare: re-parse to name the right line
            row = self._parse(index, data, self._lines_before(index, fd, k))
        if row is None:
            raise DataError(f"{index.path}: changed while training (row {k + 1} is gone); restart the run")
        return row

    @staticmethod
    def _parse(index: TextIndex, data: bytes, lines_before: int):
        text = [line.decode("utf-8", "replace") for line in _split_keep(data)]
        if index.kind == "csv":
            return next(parse_csv(text, index.path, header=list(index.header), lines_before=lines_before), None)
        return next(parse_json(text, lines_before=lines_before), None)

    @staticmethod
    def _lines_before(index: TextIndex, fd: int, k: int) -> int:
        base = k - k % CHECKPOINT
        start = int(index.offsets[base])
        gap = os.pread(fd, int(index.offsets[k]) - start, start)
        return int(index.lines[base // CHECKPOINT]) + len(_LINE_END.findall(gap))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _split_keep(data: bytes) -> list[bytes]:
    """Lines of ``data`` with their endings (\\n, \\r\\n or a lone \\r), as text mode with newline="" splits."""
    out, begin = [], 0
    for match in _LINE_END.finditer(data):
        out.append(data[begin:match.end()])
        begin = match.end()
    if begin < len(data):
        out.append(data[begin:])
    return out
