"""Where rows come from: files, globs, folders, hub datasets and the synthetic generator.

Everything is read with ``datasets`` in streaming mode, one file at a time, so memory stays flat
in the number of rows and each row keeps its file and row number for error messages.

Spec strings:
- a file (``.csv``, ``.jsonl``/``.json``, ``.parquet``; ``.gz``/``.zst`` compressed text files too),
  a glob (``data/train-*.parquet``) or a folder (its data files, sorted);
- ``synthetic:ROWS`` or ``synthetic:ROWS:SEED`` (the built-in generator, see ``mathverify.synthetic``);
- ``synthetic-test:ROWS:SEED``: the same rows in the contest's test layout (ID, placeholder labels);
- anything else is a Hugging Face hub dataset name, optionally ``name:split`` (default ``train``).
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

REQUIRED = ("question", "answer", "solution")
_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_COMPRESSED = (".gz", ".zst", ".bz2", ".xz")


class DataError(ValueError):
    """Unreadable input, with the file (and row and column where known) in its message."""


@dataclass(frozen=True)
class Part:
    """One readable piece of a source: a file, a hub split, or a synthetic stream."""

    name: str  # shown in messages
    kind: str  # csv | json | parquet | hub | synthetic
    arg: str = ""
    rows: int = 0
    seed: int = 0
    test_layout: bool = False


def data_format(path: str) -> Optional[str]:
    name = path.lower()
    for ext in _COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
    return _FORMATS.get(os.path.splitext(name)[1])


def resolve_parts(spec: str | list[str]) -> list[Part]:
    """Expand a spec (or a list of specs) into readable parts, failing early on missing paths."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    parts: list[Part] = []
    for one in specs:
        parts.extend(_resolve_one(str(one)))
    return parts


def _resolve_one(spec: str) -> list[Part]:
    if spec.startswith(("synthetic:", "synthetic-test:")):
        kind, *nums = spec.split(":")
        try:
            rows, seed = int(nums[0]), int(nums[1]) if len(nums) > 1 else 0
        except (ValueError, IndexError):
            raise DataError(f"{spec}: expected synthetic:ROWS or synthetic:ROWS:SEED") from None
        return [Part(spec, "synthetic", rows=rows, seed=seed, test_layout=kind == "synthetic-test")]
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and data_format(str(p)))
        if not files:
            raise DataError(f"{spec}: folder holds no .csv/.jsonl/.json/.parquet files")
        return [_file_part(f) for f in files]
    if any(ch in spec for ch in "*?["):
        files = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        if not files:
            raise DataError(f"{spec}: no file matches this pattern")
        return [_file_part(f) for f in files]
    if path.is_file():
        return [_file_part(str(path))]
    if data_format(spec) or spec.startswith((".", "/", "~")):
        raise DataError(f"{spec}: no such file")
    name, _, split = spec.partition(":")
    return [Part(spec, "hub", arg=f"{name}:{split or 'train'}")]


def _file_part(path: str) -> Part:
    fmt = data_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown format (use .csv, .jsonl, .json or .parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty")
    return Part(path, fmt, arg=path)


def csv_header(path: str) -> list[str]:
    import fsspec

    with fsspec.open(path, "rt", compression="infer", encoding="utf-8", newline="") as handle:
        header = next(csv.reader(io.StringIO(handle.readline())), None)
    if not header:
        raise DataError(f"{path}: no header row")
    return header


def open_part(part: Part):
    """A streaming ``datasets.IterableDataset`` over one part."""
    import datasets

    if part.kind == "synthetic":
        return datasets.IterableDataset.from_generator(
            _synthetic_rows, gen_kwargs={"rows": part.rows, "seed": part.seed, "test": part.test_layout}
        )
    if part.kind == "hub":
        name, split = part.arg.rsplit(":", 1)
        try:
            return datasets.load_dataset(name, split=split, streaming=True)
        except Exception as err:  # offline, unknown name, gated: one line is enough
            raise DataError(f"{part.name}: cannot open hub dataset ({type(err).__name__}: {err})") from None
    if part.kind == "csv":
        header = csv_header(part.arg)
        features = datasets.Features({col: datasets.Value("string") for col in header})
        return datasets.load_dataset(
            "csv", data_files=[part.arg], split="train", streaming=True, features=features, na_filter=False
        )
    return datasets.load_dataset(part.kind, data_files=[part.arg], split="train", streaming=True)


def _synthetic_rows(rows: int, seed: int, test: bool):
    from mathverify.synthetic import generate_rows

    for index, row in enumerate(generate_rows(rows, seed=seed)):
        if test:
            yield {"ID": index, "question": row["question"], "is_correct": True,
                   "answer": row["answer"], "solution": row["solution"]}
        else:
            yield row


def iter_rows(parts: list[Part], start: int = 0) -> Iterator[tuple[str, int, dict]]:
    """Yield (part name, 1-based row number in that part, row) for every row, skipping ``start`` rows.

    Skipped rows are read but not decoded further; resuming pays a cheap re-read, nothing more.
    """
    skip = start
    for part in parts:
        ds = open_part(part)
        number = 0
        for row in ds:
            number += 1
            if number == 1:
                _check_columns(part, row)
            if skip:
                skip -= 1
                continue
            yield part.name, number, row


def _check_columns(part: Part, row: dict) -> None:
    missing = [c for c in REQUIRED if c not in row]
    if missing:
        raise DataError(
            f"{part.name}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, row)) or 'none'}"
        )
