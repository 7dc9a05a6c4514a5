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


def adopted_threshold(probs: Tensor, labels: Tensor, tuned: float, reference: float = 0.5, min_z: float = 3.0) -> float:
    """``tuned`` if it beats ``reference`` by more than chance on these rows, else ``reference``.

    Moving the cut changes the decision of the m rows between the two thresholds; if the model
    were calibrated each such change would be a coin flip, so the gain in right rows g has a
    standard deviation of sqrt(m). The tuned cut is kept only when g >= min_z * sqrt(m) (3: the
    optimum is the best of many cuts tried): an in-sample optimum on a few hundred rows is
    mostly noise (a 0.24 threshold "won" 4 rows of ~165 on one real set and lost 12 on its test rows), while a model that is really off (predicting
    far fewer True than there are) moves many rows the same way and passes easily.
    """
    if min_z <= 0:
        return tuned
    before, after = probs > reference, probs > tuned
    changed = before != after
    m = int(changed.sum())
    if m == 0:
        return reference
    truth = labels.bool()
    gain = int((after[changed] == truth[changed]).sum()) - int((before[changed] == truth[changed]).sum())
    return tuned if gain >= min_z * m ** 0.5 else reference


def _cut_value(p: Tensor, k: int) -> float:
    """The midpoint t of p[k-1] and p[k] (taking p[-1] = 0, p[n] = 1), so p[k-1] <= t < p[k] for the
    decision ``p > t``, and t lies in (0, 1) whenever the cut is valid: predict can use it as is."""
    low = float(p[k - 1]) if k > 0 else 0.0
    high = float(p[k]) if k < len(p) else 1.0
    return (low + high) / 2


class DecisionThreshold(Callback):
    """Finds the thresholds that maximise validation accuracy and F1, and hands one to the module.

    Two thresholds, one per case a row can be in: ``threshold`` from the ``val`` view (questions
    not in training: no labelled sibling) and ``threshold_seen`` from the ``val_seen`` view (rows
    whose question has labelled training rows). The module keeps both in its checkpoints, and
    test/predict give each row the one of its case (``VerifierModule.decision_thresholds``) unless
    the user overrides them (``--threshold``). Logged as ``val/threshold_acc``, ``val/acc_tuned``,
    ``val/threshold_f1``, ``val/f1_tuned`` (and the same under ``val_seen/``): tuned on the same
    rows, so in-sample (optimistic). Without evidence a row cannot tell its case, and only the
    ``val`` threshold is used.

    The tuned value is adopted only when it beats 0.5 by more than chance on the rows it was
    tuned on (``adopted_threshold``); ``<view>/threshold_used`` logs what the module got.

    Args:
        optimise: which tuned threshold the module uses: ``acc`` (the contest metric) or ``f1``.
        apply: set the module's threshold (False: only log).
        min_z: adopt a tuned threshold only when its gain in right rows over 0.5 is at least this
            many standard deviations of a coin flip per changed row (0: always adopt).
    """

    def __init__(self, optimise: str = "acc", apply: bool = True, min_z: float = 3.0) -> None:
        if optimise not in ("acc", "f1"):
            raise ValueError(f"optimise must be 'acc' or 'f1', got {optimise!r}")
        if min_z < 0:
            raise ValueError(f"min_z must be >= 0, got {min_z}")
        self.optimise, self.apply, self.min_z = optimise, apply, min_z

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        rows = pl_module.epoch_outputs()  # every rank's rows, gathered once per validation
        for view, (prefix, attribute) in enumerate((("val", "threshold"), ("val_seen", "threshold_seen"))):
            mine = rows["view"] == view
            if not bool(mine.any()):
                continue
            probs, labels = rows["probs"][mine].float(), rows["labels"][mine].long()
            tuned = best_thresholds(probs, labels)
            used = tuned[f"threshold_{self.optimise}"]
            if self.optimise == "acc":  # F1 has no 0.5 reference worth keeping
                used = adopted_threshold(probs, labels, used, min_z=self.min_z)
            for name, value in {**tuned, "threshold_used": used}.items():
                pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
            if self.apply:
                setattr(pl_module, attribute, used)
