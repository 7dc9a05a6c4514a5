"""From raw rows to model-ready examples and padded batches."""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

from mathverify.data.labels import LabelError, parse_label
from mathverify.data.sources import BAD_ROW, DataError, valid_text
from mathverify.data.split import question_digest
from mathverify.evidence.answers import answer_key
from mathverify.evidence.checks import flawed
from mathverify.model.prefix import shared_prefix_length

TEXT_FIELDS = ("question", "answer", "solution")


def clean_row(row: dict, need_label: bool) -> tuple[Optional[dict], Optional[str], Optional[str]]:
    """Check one raw row. Returns (clean row, None, None) or (None, reason, column).

    Text fields must be non-empty strings (numbers are accepted as ``answer`` and written as text;
    NaN counts as empty); labels must be one of the spellings :func:`parse_label` accepts. A row the
    reader could not parse (``BAD_ROW``) is returned with the reader's reason.
    """
    if row.get(BAD_ROW):
        return None, _reason_kind(row[BAD_ROW]), BAD_ROW
    clean = {}
    for field in TEXT_FIELDS:
        value, reason = _text(row.get(field), field)
        if reason:
            return None, reason, field
        clean[field] = value
    if need_label:
        try:
            clean["label"] = int(parse_label(row.get("is_correct")))
        except LabelError:
            return None, "unreadable label", "is_correct"
    return clean, None, None


def _reason_kind(detail: str) -> str:
    # The training stream counts rows per reason: keep the reason free of line numbers.
    if "quoting" in detail:
        return "broken CSV quoting"
    if "fields, header has" in detail:
        return "wrong CSV field count"
    return "unreadable line"


def _text(value, field: str) -> tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, reason) for one text field."""
    if isinstance(value, float) and math.isnan(value):
        return None, f"empty {field}"
    if field == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        # Parquet may store answers as numbers; 3.0 is written 3, as a contest answer would be.
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        return None, (f"empty {field}" if value is None else f"non-text {field}")
    if not value.strip():
        return None, f"empty {field}"
    return valid_text(value), None


def row_error(name: str, number: int, reason: str, column: str, row: dict) -> DataError:
    if column == BAD_ROW:  # the reader's own detail names the line
        return DataError(f"{name}: row {number}: {row[BAD_ROW]}")
    value = repr(row.get(column))
    value = value if len(value) <= 60 else value[:57] + "..."
    return DataError(f"{name}: row {number}, column {column}: {reason} ({value})")


ERRORS_SHOWN = 5  # enough to see a pattern, short enough for one line


def bad_rows_error(errors: list[str]) -> DataError:
    """One line listing the first few bad rows of a file that must be read whole."""
    shown = "; ".join(errors[:ERRORS_SHOWN])
    more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
    return DataError(f"{len(errors)} bad row(s), none may be skipped here: {shown}{more}")


def checked_id(value, name: str, number: int, seen: dict) -> tuple[Optional[str], Optional[DataError]]:
    """(ID as text, None) or (None, error): IDs must be integers and unique (a submission keys on them).

    ``seen`` maps each ID already read to its row number, for the duplicate message.
    """
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, float) and not math.isnan(text) and text.is_integer():
        text = int(text)
    if isinstance(text, str) and text.lstrip("+-").isdigit():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int):
        return None, row_error(name, number, "ID is not an integer", "ID", {"ID": value})
    if text in seen:
        return None, row_error(name, number, f"duplicate ID {text} (first at row {seen[text]})", "ID", {"ID": value})
    seen[text] = number
    return str(text), None


def checked_examples(rows: Iterable[tuple[str, int, dict]], encoder, need_label: bool,
                     solution_checks: bool = True) -> list[dict]:
    """Check every raw row (``(file name, row number, row)``), then tokenize them all.

    A bad row is an error, never skipped: the ``DataError`` lists the first few as
    ``FILE: row N, column C: reason``. Each example: input_ids, row_index (position in ``rows``),
    digest (``split.question_digest``), question (its text), id (the ``ID`` column, else the position), answer,
    answer_key, view 0, own_in ``"pool"`` (see ``evidence.eval_features``), with ``solution_checks``
    flawed (``evidence.checks.flawed`` of its solution: only the evidence reads it) and, with
    ``need_label``, label.
    """
    clean, errors, seen_ids = [], [], {}
    for name, number, raw in rows:
        if need_label and "is_correct" not in raw and not raw.get(BAD_ROW):  # the column, not a row, is missing
            columns = ", ".join(k for k in raw if not k.startswith("_")) or "none"
            raise DataError(f"{name}: no is_correct column (columns: {columns}): labelled rows are needed here; "
                            "predict or score take unlabelled rows")
        row, reason, column = clean_row(raw, need_label)
        problem = row_error(name, number, reason, column, raw) if row is None else None
        if problem is None and "ID" in raw:
            row["id"], problem = checked_id(raw["ID"], name, number, seen_ids)
        if problem is not None:
            errors.append(str(problem))
            continue
        row.setdefault("id", None)
        row["digest"] = question_digest(row["question"])
        clean.append(row)
    if errors:
        raise bad_rows_error(errors)
    if not clean:
        raise DataError("no data rows to validate/test/predict/score (is the file a header only?)")
    ids, _ = encoder.encode(clean)
    examples = []
    for index, (row, input_ids) in enumerate(zip(clean, ids)):
        example = {"input_ids": input_ids, "row_index": index, "digest": row["digest"], "question": row["question"],
                   "id": row["id"] if row["id"] is not None else str(index),
                   "answer": row["answer"], "answer_key": answer_key(row["answer"]), "view": 0, "own_in": "pool"}
        if solution_checks:
            example["flawed"] = flawed(row["solution"], row["answer"])
        if need_label:
            example["label"] = row["label"]
        examples.append(example)
    return examples


def collate_examples(examples: list[dict], pad_id: int) -> dict:
    """Right-pad a list of examples into a batch.

    Each example has ``input_ids`` (list[int]) and optionally ``label``, ``row_index``, ``id``.
    Returns input_ids/attention_mask [B, T], lengths [B], labels [B] (-1 when unlabeled),
    row_index [B], ids (list of str), shared_prefix (int: leading tokens common to all rows,
    see ``mathverify.model.prefix``), view [B] (0: unseen questions, 1: the seen validation view) and,
    when the examples carry it, evidence [B, F] (``mathverify.evidence.index``).
    """
    lengths = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"], dtype=torch.long)
        attention_mask[i, : len(e["input_ids"])] = 1
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "lengths": lengths,
        "labels": torch.tensor([e.get("label", -1) for e in examples], dtype=torch.long),
        "row_index": torch.tensor([e.get("row_index", -1) for e in examples], dtype=torch.long),
        "ids": [str(e.get("id", e.get("row_index", ""))) for e in examples],
        "shared_prefix": shared_prefix_length(input_ids, lengths),
        "view": torch.tensor([e.get("view", 0) for e in examples], dtype=torch.long),
    }
    if "evidence" in examples[0]:  # [B, evidence.N_FEATURES]
        batch["evidence"] = torch.tensor([e["evidence"] for e in examples], dtype=torch.float32)
    return batch


def padding_fraction(batches: list[dict]) -> float:
    """Share of padded positions over the given batches (0 = no padding)."""
    real = sum(int(b["lengths"].sum()) for b in batches)
    total = sum(b["input_ids"].numel() for b in batches)
    return 1.0 - real / total if total else 0.0


def batch_rows(batch: dict) -> int:
    """Rows in a batch (for Lightning's ThroughputMonitor ``batch_size_fn``)."""
    return int(batch["lengths"].shape[0])


def batch_tokens(batch: dict) -> int:
    """Real (unpadded) tokens in a batch (ThroughputMonitor ``length_fn``)."""
    return int(batch["lengths"].sum())
