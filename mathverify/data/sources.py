"""Where rows come from: files, globs, folders, hub datasets and the synthetic generator.

Everything is streamed one file at a time, so memory stays flat in the number of rows and each row
keeps its file and row number for error messages. CSV and JSON-lines files are read line by line here
(Python's ``csv``/``json``, any ``fsspec`` compression) so that one broken line becomes one bad row
instead of killing the whole file; Parquet files go through ``datasets``. Hub datasets are
downloaded once into ``datasets``' cache (Arrow files, memory-mapped: ``HF_DATASETS_CACHE``) and
read from there, like a folder written by ``Dataset.save_to_disk`` (``arrow_dataset``); with
``HF_HUB_OFFLINE=1`` the cached copy is used.

Spec strings:
- a file (``.csv``, ``.jsonl``/``.json``, ``.parquet``; ``.gz``/``.zst`` compressed text files too),
  a glob (``data/train-*.parquet``) or a folder (its data files, sorted);
- a folder written by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` folder takes ``FOLDER:split``,
  default ``train``);
- ``synthetic:ROWS`` or ``synthetic:ROWS:SEED`` (the built-in generator, see ``mathverify.data.synthetic``);
- ``synthetic-test:ROWS:SEED``: the same rows in the contest's test layout (ID, placeholder labels);
- anything else is a Hugging Face hub dataset name, optionally ``name:split`` (default ``train``).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

REQUIRED = ("question", "answer", "solution")
BAD_ROW = "__bad_row__"
"""Key of a row the reader could not parse; its value is the reason (see ``examples.clean_row``)."""
FIELD_LIMIT = 64 * 1024 * 1024  # one CSV field; beyond this an unclosed quote is swallowing the file
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_COMPRESSED = (".gz", ".zst", ".bz2", ".xz")


class DataError(ValueError):
    """Unreadable input, with the file (and row and column where known) in its message."""


@dataclass(frozen=True)
class Part:
    """One readable piece of a source: a file, a hub split, or a synthetic stream."""

    name: str  # shown in messages
    kind: str  # csv | json | parquet | hub | arrow (a save_to_disk folder) | synthetic
    arg: str = ""  # the path; for hub "name:split"
    split: str = ""  # arrow: the split of a DatasetDict folder
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
    base, _, split = spec.rpartition(":")
    if base and _saved_layout(Path(base).expanduser()) == "dict":
        return [_arrow_part(spec, Path(base).expanduser(), split)]
    layout = _saved_layout(path)
    if layout:
        return [_arrow_part(spec, path, "train" if layout == "dict" else "")]
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and data_format(str(p)))
        if not files:
            raise DataError(f"{spec}: folder holds no .csv/.jsonl/.json/.parquet files")
        return [_file_part(f) for f in files]
    if any(ch in spec for ch in "*?["):
        matched = sorted(f for f in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(f))
        files = [f for f in matched if data_format(f)]
        if not files:
            other = f" (only {len(matched)} file(s) of other formats, e.g. {matched[0]})" if matched else ""
            raise DataError(f"{spec}: no .csv/.jsonl/.json/.parquet file matches this pattern{other}")
        return [_file_part(f) for f in files]
    if path.is_file():
        return [_file_part(str(path))]
    if data_format(spec) or spec.startswith((".", "/", "~")):
        raise DataError(f"{spec}: no such file")
    name, _, split = spec.partition(":")
    return [Part(spec, "hub", arg=f"{name}:{split or 'train'}")]


def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in _OFFLINE_VARS)


def _saved_layout(path: Path) -> Optional[str]:
    """"dict" / "dataset" for a folder written by ``DatasetDict`` / ``Dataset.save_to_disk``, else None."""
    if (path / "dataset_dict.json").is_file():
        return "dict"
    return "dataset" if (path / "state.json").is_file() and (path / "dataset_info.json").is_file() else None


def _arrow_part(spec: str, path: Path, split: str) -> Part:
    part = Part(spec, "arrow", arg=str(path), split=split)
    data = arrow_dataset(part)  # memory-mapped: opening costs the footers, not the rows
    _check_columns(part, data.column_names)
    if len(data) == 0:
        raise DataError(f"{spec}: no data rows (an empty dataset)")
    return part


_OPENED: dict[tuple, object] = {}


def arrow_dataset(part: Part):
    """The ``datasets.Dataset`` behind a hub or ``save_to_disk`` part, memory-mapped (opened once per process).

    A hub dataset is downloaded into ``datasets``' cache on first use (``prepare_data`` does it on
    one process per machine) and read from the cache after, online or offline."""
    key = (part.kind, part.arg, part.split)
    if key not in _OPENED:
        import datasets

        try:
            if part.kind == "hub":
                name, split = part.arg.rsplit(":", 1)
                data = datasets.load_dataset(name, split=split)
            else:
                data = datasets.load_from_disk(part.arg)
                if isinstance(data, datasets.DatasetDict):
                    if part.split not in data:
                        raise DataError(f"{part.name}: no split {part.split!r} in this saved DatasetDict "
                                        f"(it has {', '.join(data) or 'none'}; pick one as FOLDER:split)")
                    data = data[part.split]
        except DataError:
            raise
        except Exception as err:  # offline and not cached, unknown name, gated, a damaged folder: one line
            hint = (f" (offline: {'/'.join(_OFFLINE_VARS)} is set and it is not in the datasets cache; download it "
                    "once online, or pass local files)") if part.kind == "hub" and _offline() else ""
            raise DataError(f"{part.name}: cannot open {'hub dataset' if part.kind == 'hub' else 'saved dataset'}"
                            f"{hint} ({type(err).__name__}: {_one_line(err)})") from None
        _OPENED[key] = data
    return _OPENED[key]


def _arrow_rows(data) -> Iterator[dict]:
    for batch in data.iter(batch_size=1024):  # column batches: far cheaper than row by row
        names = list(batch)
        for values in zip(*batch.values()):
            yield dict(zip(names, values))


def _file_part(path: str) -> Part:
    fmt = data_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown format (use .csv, .jsonl, .json or .parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty")
    part = Part(path, fmt, arg=path)
    _probe(part)
    return part


def _probe(part: Part) -> None:
    """Cheap up-front look at a file (header, schema, first row) so a bad shard in a glob fails at
    start-up, not hours into training. Reads a few lines or the Parquet footer, never the file."""
    if part.kind == "parquet":
        columns, rows = _parquet_shape(part.arg)
    elif part.kind == "json" and _is_json_array(part.arg):
        return  # a whole-file JSON array: datasets reads (and checks) it
    else:
        first = next(iter(_read_csv(part.arg) if part.kind == "csv" else _read_json(part.arg)), None)
        if first is None:
            raise DataError(f"{part.name}: no data rows (empty, or a header only)")
        columns, rows = [c for c in first if c != BAD_ROW], 1
    _check_columns(part, columns)
    if rows == 0:
        raise DataError(f"{part.name}: no data rows (a schema only)")


def _parquet_shape(path: str) -> tuple[list[str], int]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as err:  # truncated or not Parquet at all
        raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {_one_line(err)})") from None
    return list(meta.schema.names), meta.num_rows


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _open_text(path: str):
    import fsspec

    # utf-8-sig drops a BOM (Excel writes one); undecodable bytes become U+FFFD rather than a crash.
    return fsspec.open(path, "rt", compression="infer", encoding="utf-8-sig", errors="replace", newline="")


def _read_csv(path: str) -> Iterator[dict]:
    """Rows of a CSV file as dicts of strings; a row the parser rejects comes back marked
    ``BAD_ROW`` (with its line) and parsing resumes at the next line when it can."""
    with _open_text(path) as handle:
        yield from parse_csv(handle, path)


def parse_csv(lines: Iterable[str], path: str, header: Optional[list[str]] = None,
              lines_before: int = 0) -> Iterator[dict]:
    """The CSV rows of ``lines`` (text lines, newline kept); with ``header`` given the lines start
    after it (a slice of the file that begins ``lines_before`` lines in, as ``rowindex`` reads it)."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))  # 1 MB solutions are legal
    reader = csv.reader(lines, strict=True)
    header = header if header is not None else next(reader, None)
    if not header:
        return
    while True:
        line = lines_before + reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "unexpected end of data" in str(err) or "field larger" in str(err):
                raise DataError(f"{path}: line {line}: unclosed quote runs to the end of the file; "
                                "fix the quoting (no later row can be read)") from None
            yield _bad(header, [], f"broken CSV quoting at line {line} ({_one_line(err)})")
            continue
        if not fields:
            continue  # blank line
        if len(fields) != len(header):
            yield _bad(header, fields, f"line {line} has {len(fields)} fields, header has {len(header)}")
            continue
        yield dict(zip(header, fields))


def _bad(header: list[str], fields: list[str], reason: str) -> dict:
    # Keep every column (question as text) so the training stream reaches clean_row and counts the reason.
    row = {col: (fields[i] if i < len(fields) else "") for i, col in enumerate(header)}
    row[BAD_ROW] = reason
    return row


def _read_json(path: str) -> Iterator[dict]:
    """Rows of a JSON-lines file; an unparsable line comes back marked ``BAD_ROW``."""
    with _open_text(path) as handle:
        yield from parse_json(handle)


def parse_json(lines: Iterable[str], lines_before: int = 0) -> Iterator[dict]:
    """The rows of JSON ``lines``; ``lines_before``: lines of the file before them (for messages)."""
    for line, text in enumerate(lines, lines_before + 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as err:
            yield {c: "" for c in REQUIRED} | {BAD_ROW: f"unreadable JSON at line {line} ({_one_line(err)})"}
            continue
        if not isinstance(row, dict):
            yield {c: "" for c in REQUIRED} | {BAD_ROW: f"line {line} is not a JSON object"}
            continue
        yield {k: valid_text(v) for k, v in row.items()}


def valid_text(value):
    """Lone surrogates (JSON may encode ``\\ud800``) crash tokenizers: replace them, keep the rest."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _is_json_array(path: str) -> bool:
    with _open_text(path) as handle:
        head = handle.read(4096).lstrip()
    return head.startswith("[")


def open_part(part: Part):
    """An iterable of row dicts over one part (streamed; ``datasets`` only where it is needed)."""
    if part.kind == "csv":
        return _read_csv(part.arg)
    if part.kind == "json" and not _is_json_array(part.arg):
        return _read_json(part.arg)
    if part.kind in ("hub", "arrow"):
        return _arrow_rows(arrow_dataset(part))
    import datasets  # slow to import (seconds): only for Parquet, JSON arrays and synthetic parts

    if part.kind == "synthetic":
        return datasets.IterableDataset.from_generator(
            _synthetic_rows, gen_kwargs={"rows": part.rows, "seed": part.seed, "test": part.test_layout}
        )
    return datasets.load_dataset(part.kind, data_files=[part.arg], split="train", streaming=True)


def _synthetic_rows(rows: int, seed: int, test: bool):
    from mathverify.data.synthetic import generate_rows

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
        number = 0
        rows = iter(open_part(part))
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except DataError:
                raise
            except Exception as err:  # pyarrow/network failure inside a file: name it, in one line
                raise DataError(f"{part.name}: unreadable after row {number} ({type(err).__name__}: {_one_line(err)})") from None
            number += 1
            if number == 1:
                _check_columns(part, row)
            if skip:
                skip -= 1
                continue
            yield part.name, number, row


def _check_columns(part: Part, columns) -> None:
    """The one missing-column check: ``columns`` is a file's header (or a first row's keys)."""
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(
            f"{part.name}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, columns)) or 'none'}"
        )
