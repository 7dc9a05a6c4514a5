"""Deterministic train/validation split by question.

The contest data holds several generated solutions per question, so a random row split leaks the
question into both sides. We key each row by a stable digest of its normalised question text
(sha1, never Python's per-process ``hash()``) and keep every row of a question on one side.
"""

from __future__ import annotations

import hashlib
import re

from mathverify.errors import SettingsError

_SPACE = re.compile(r"\s+")


def normalise_question(text: str) -> str:
    """Lower-case and collapse white space, so trivially different copies share a digest."""
    return _SPACE.sub(" ", str(text)).strip().lower()


def question_digest(text: str) -> str:
    """Hex sha1 of the normalised question."""
    return hashlib.sha1(normalise_question(text).encode("utf-8", "surrogatepass")).hexdigest()


def digest_fraction(digest: str) -> float:
    """Map a digest to [0, 1), uniformly: the first 52 bits as a fraction."""
    return int(digest[:13], 16) / float(1 << 52)


def split_by_question(digests: list[str], size: float | int) -> set[str]:
    """Choose the validation questions among the rows whose question digests are given.

    ``size`` as a float in (0, 1) is the fraction of questions (by digest value, so the choice is
    stable when rows are added); as an int >= 1 it is a number of rows: questions are taken in
    digest order until at least that many rows are covered. Returns the set of chosen digests.
    """
    if isinstance(size, float) and not size.is_integer():
        if not 0.0 < size < 1.0:
            raise SettingsError(f"val_size as a fraction must be in (0, 1), got {size}")
        return {d for d in set(digests) if digest_fraction(d) < size}
    want = int(size)
    if want < 1:
        raise SettingsError(f"val_size as a row count must be >= 1, got {size}")
    rows_per_question: dict[str, int] = {}
    for d in digests:
        rows_per_question[d] = rows_per_question.get(d, 0) + 1
    chosen, covered = set(), 0
    for d in sorted(rows_per_question):
        if covered >= want:
            break
        chosen.add(d)
        covered += rows_per_question[d]
    if len(chosen) == len(rows_per_question):
        raise SettingsError(
            f"val_size={want} rows would take every question ({covered} rows scanned): "
            "nothing would be left to train on; lower val_size or scan more rows"
        )
    return chosen
