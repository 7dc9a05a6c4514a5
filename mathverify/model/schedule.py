"""The learning-rate schedule: linear warm-up, then cosine, linear or constant to the run's last step."""

from __future__ import annotations

import math
from typing import Callable


def warmup_then_decay(total: int, warmup: int, schedule: str) -> Callable[[int], float]:
    """Factor on the peak rate at optimizer step ``step`` (0-based) of ``total``: (step + 1) / (warmup + 1)
    while warming up, then ``schedule`` (cosine, linear or constant) over the remaining steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if schedule == "linear":
            return 1.0 - progress
        return 1.0

    return factor
