"""The single decision rule shared by the callbacks, so metrics and submission never disagree."""

from __future__ import annotations

from typing import TypeVar

ProbsT = TypeVar("ProbsT")


def is_predicted_true(p_true: ProbsT, threshold: float) -> ProbsT:
    """True where P(is_correct=True) is strictly above ``threshold``.

    Strictly above matches torchmetrics' own binary thresholding (``preds > threshold``), so
    numbers from these callbacks agree with torchmetrics metrics built with the same threshold.
    Works for a float or a tensor.
    """
    return p_true > threshold
