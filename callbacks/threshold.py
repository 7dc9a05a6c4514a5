"""Tune the decision threshold on P(correct) at each validation; predict uses the tuned one."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor



def best_thresholds(probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Thresholds t (decision ``p > t``) that maximise accuracy and F1 on these rows, and those scores.

    Exact: every cut between two distinct sorted probabilities is tried (O(n log n)).
    """
    order = torch.argsort(probs)
    p, y = probs[order].double(), labels[order].double()
    n, positives = len(p), float(y.sum())
    # Cut k: rows [0, k) predicted False, rows [k, n) predicted True; only cuts between distinct values.
    neg_below = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - y, 0)])  # [n+1]
    pos_below = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(y, 0)])
    valid = torch.ones(n + 1, dtype=torch.bool)
    valid[1:n] = p[1:] > p[:-1]
    valid[0] = bool(p[0] > 0)  # "all True" needs a threshold below p[0] that is still > 0
    valid[n] = bool(p[-1] < 1)  # "all False" needs one at or above p[-1] that is still < 1
    tp = positives - pos_below
    predicted_true = n - torch.arange(n + 1, dtype=torch.float64)
    accuracy = (neg_below + tp) / n
    f1 = torch.where(predicted_true + positives > 0, 2 * tp / (predicted_true + positives), torch.zeros(1, dtype=torch.float64))
    cuts = torch.tensor([_cut_value(p, k) for k in range(n + 1)], dtype=torch.float64)
    result = {}
    for name, score in (("acc", accuracy), ("f1", f1)):
        score = torch.where(valid, score, torch.full_like(score, -1.0))
        ties = torch.nonzero(score == score.max()).reshape(-1)
        k = int(ties[torch.argmin((cuts[ties] - 0.5).abs())])  # among equals, the cut nearest 0.5
        result[f"threshold_{name}"] = float(cuts[k])
        result[f"{name}_tuned"] = float(score[k])
    return result


def _cut_value(p: Tensor, k: int) -> float:
    """The midpoint t of p[k-1] and p[k] (taking p[-1] = 0, p[n] = 1), so p[k-1] <= t < p[k] for the
    decision ``p > t``, and t lies in (0, 1) whenever the cut is valid: predict can use it as is."""
    low = float(p[k - 1]) if k > 0 else 0.0
    high = float(p[k]) if k < len(p) else 1.0
    return (low + high) / 2


class DecisionThreshold(Callback):
    """Finds the thresholds that maximise validation accuracy and F1, and hands one to the module.

    The module keeps the chosen threshold in its checkpoints, so ``predict`` uses it unless the
    user overrides it (``--threshold``). Logged as ``val/threshold_acc``, ``val/acc_tuned``,
    ``val/threshold_f1``, ``val/f1_tuned``: tuned on the same rows, so in-sample (optimistic).

    Args:
        optimise: which tuned threshold the module uses: ``acc`` (the contest metric) or ``f1``.
        apply: set the module's threshold (False: only log).
    """

    def __init__(self, optimise: str = "acc", apply: bool = True) -> None:
        if optimise not in ("acc", "f1"):
            raise ValueError(f"optimise must be 'acc' or 'f1', got {optimise!r}")
        self.optimise, self.apply = optimise, apply

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        rows = pl_module.epoch_outputs()  # every rank's rows, gathered once per validation
        unseen = rows["view"] == 0  # the view val/acc reports
        if not bool(unseen.any()):
            return
        tuned = best_thresholds(rows["probs"][unseen].float(), rows["labels"][unseen].long())
        for name, value in tuned.items():
            pl_module.log(f"val/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
        if self.apply:
            pl_module.threshold = tuned[f"threshold_{self.optimise}"]
