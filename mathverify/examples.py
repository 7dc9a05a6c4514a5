"""From raw rows to model-ready examples and padded batches."""

from __future__ import annotations

import math
from typing import Optional

import torch

from mathverify.labels import LabelError, parse_label
from mathverify.sources import DataError

TEXT_FIELDS = ("question", "answer", "solution")


def clean_row(row: dict, need_label: bool) -> tuple[Optional[dict], Optional[str], Optional[str]]:
    """Check one raw row. Returns (clean row, None, None) or (None, reason, column).

    Text fields must be non-empty strings (numbers are accepted as ``answer`` and written as text);
    labels must be one of the spellings :func:`parse_label` accepts.
    """
    clean = {}
    for field in TEXT_FIELDS:
        value = row.get(field)
        if field == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                return None, f"empty {field}", field
            value = str(value)
        if not isinstance(value, str):
            return None, (f"empty {field}" if value is None else f"non-text {field}"), field
        if not value.strip():
            return None, f"empty {field}", field
        clean[field] = value
    if need_label:
        try:
            clean["label"] = int(parse_label(row.get("is_correct")))
        except LabelError:
            return None, "unreadable label", "is_correct"
    return clean, None, None


def row_error(name: str, number: int, reason: str, column: str, row: dict) -> DataError:
    value = repr(row.get(column))
    value = value if len(value) <= 60 else value[:57] + "..."
    return DataError(f"{name}: row {number}, column {column}: {reason} ({value})")


def collate_examples(examples: list[dict], pad_id: int) -> dict:
    """Right-pad a list of examples into a batch.

    Each example has ``input_ids`` (list[int]) and optionally ``label``, ``row_index``, ``id``.
    Returns input_ids/attention_mask [B, T], lengths [B], labels [B] (-1 when unlabeled),
    row_index [B] and ids (list of str).
    """
    lengths = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"], dtype=torch.long)
        attention_mask[i, : len(e["input_ids"])] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "lengths": lengths,
        "labels": torch.tensor([e.get("label", -1) for e in examples], dtype=torch.long),
        "row_index": torch.tensor([e.get("row_index", -1) for e in examples], dtype=torch.long),
        "ids": [str(e.get("id", e.get("row_index", ""))) for e in examples],
    }


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
