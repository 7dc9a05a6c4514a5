"""Which training rows become validation rows (split by question, see ``mathverify.data.split``).

For sources read out of order (plain CSV/JSON lines, Parquet: ``mathverify.data.order``) the choice
looks at the whole source through a 64-bit key of each row's question digest, never holding rows in memory beyond the chosen ones:

- ``val_size`` a fraction: every question whose digest fraction is below it is a validation
  question (as before); the validation rows are a seeded sample, spread over the whole source, of
  ``val_size x val_scan_rows`` of their rows.
- ``val_size`` a row count: questions are taken in digest order until their rows *in the whole
  source* reach it; all those rows are the validation rows (none of them is trained on).

Other sources (compressed, hub, synthetic) keep the old rule: the split is made among the
first ``val_scan_rows`` rows.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from mathverify.data.order import random_access
from mathverify.data.sources import Part, iter_rows
from mathverify.data.split import question_digest, split_by_question
from mathverify.data.stream import ValidationRule
from mathverify.errors import SettingsError

SAMPLE_SEED = 0  # fixed: the validation rows must not move with the training seed


def validation_rows(parts: list[Part], val_size: Union[float, int],
                    val_scan_rows: int) -> tuple[list[tuple[str, int, dict]], ValidationRule]:
    """(validation rows as (part name, row number, raw row), the rule that keeps them out of training)."""
    fraction = isinstance(val_size, float) and not float(val_size).is_integer()
    source = random_access(parts)
    if source is None:
        return _from_leading_rows(parts, val_size, val_scan_rows, fraction)
    keys = source.digest_keys()
    if fraction:
        if not 0.0 < val_size < 1.0:
            raise SettingsError(f"val_size as a fraction must be in (0, 1), got {val_size}")
        rule = ValidationRule(fraction=float(val_size))
        # digest_fraction uses the first 13 hex digits: the key's top 52 bits, so this is the rule exactly
        candidates = np.nonzero((keys >> np.uint64(12)) < np.uint64(math.ceil(val_size * (1 << 52))))[0]
        want = min(len(candidates), max(1, round(val_size * min(val_scan_rows, len(keys)))))
        rng = np.random.default_rng(SAMPLE_SEED)
        chosen = np.sort(rng.choice(candidates, size=want, replace=False)) if want else candidates[:0]
    else:
        want = int(val_size)
        if want < 1:
            raise SettingsError(f"val_size as a row count must be >= 1, got {val_size}")
        questions, counts = np.unique(keys, return_counts=True)  # ascending key = digest order
        taken = int(np.searchsorted(np.cumsum(counts), want)) + 1
        if taken >= len(questions):
            raise SettingsError(
                f"val_size={want} rows would take every question ({len(keys)} rows scanned): "
                "nothing would be left to train on; lower val_size or scan more rows")
        chosen = np.nonzero(np.isin(keys, questions[:taken]))[0]
        rule = None
    rows = source.read_many(chosen)
    if rule is None:
        rule = ValidationRule(digests=frozenset(question_digest(_text(r.get("question"))) for _, _, r in rows))
    return rows, rule


def _text(value) -> str:
    return value if isinstance(value, str) else ""  # a non-text question is a bad row; it must not crash the split


def _from_leading_rows(parts, val_size, val_scan_rows, fraction):
    window = [(n, k, r) for (n, k, r), _ in zip(iter_rows(parts), range(val_scan_rows))]
    digests = [question_digest(_text(r.get("question"))) for _, _, r in window]
    if fraction:
        rule = ValidationRule(fraction=float(val_size))
    else:
        rule = ValidationRule(digests=frozenset(split_by_question(digests, int(val_size))))
    return [w for w, d in zip(window, digests) if rule.is_validation(d)], rule
