"""Label parsing: bools and the usual spellings, nothing else."""

from __future__ import annotations

import math

_TRUE = {"true", "t", "1", "yes", "y", "1.0"}
_FALSE = {"false", "f", "0", "no", "n", "0.0"}


class LabelError(ValueError):
    """A label that is not one of the accepted spellings."""


def parse_label(value) -> bool:
    """Return the boolean a label stands for.

    Accepts ``bool``, the integers 0/1, and (any case, surrounding spaces ignored) true/false,
    t/f, 1/0, yes/no, y/n. Anything else (None, NaN, 2, "maybe") raises :class:`LabelError`.
    NumPy scalars (from pandas or Arrow readers) count as the Python values they hold.
    """
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and not math.isnan(value) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise LabelError(f"unreadable label {value!r} (expected True/False, 1/0, yes/no)")
