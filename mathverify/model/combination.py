"""How the text's margin and the evidence's shift add up to P(True), per case, fitted on validation rows.

The model scores a row with two log-odds: the text margin m (the label head's logit(True) -
logit(False)) and the evidence shift d (``heads.EvidenceHead``). Training adds them, P = sigmoid(m + d).
That sum is right only if both are calibrated and independent; on real data they are not: the
evidence head is fitted to every labelled row first (``EvidenceWarmStart``) and is already
calibrated alone, so a text model that has learnt nothing beyond the evidence (a random backbone,
a few hundred steps) only adds noise on top, and one that has learnt something is counted at
whatever scale training left it.

``Combination`` keeps, per case a row can be in (no labelled sibling: unseen; some: seen, the case
that also picks the decision threshold), three numbers (a, b, c): P = sigmoid(a m + b d + c).
They start at (1, 1, 0), which is the training sum exactly; ``fit_case`` fits them by logistic
regression on held-out validation rows (``callbacks.combination.FitCombination``), so text that
is noise on held-out rows gets a ~ 0 and text that helps keeps its weight. Only test, predict
and the Python API use the fitted numbers: training and the validation loss see m + d.
"""

from __future__ import annotations

import torch
from torch import nn

IDENTITY = (1.0, 1.0, 0.0)  # (text weight a, evidence weight b, bias c): P = sigmoid(m + d)
CASES = ("unseen", "seen")  # row 0: no labelled sibling; row 1: some (``has_labelled_siblings``)


def as_logits(z: torch.Tensor) -> torch.Tensor:
    """Log-odds z [B] -> two logits [B, 2] (wrong, correct) = (-z/2, z/2): softmax gives sigmoid(z)."""
    return torch.stack([-z / 2, z / 2], dim=-1)


class Combination:
    """Per-case weights (rows: unseen, seen; columns: a, b, c); starts at the identity.

    Plain numbers, not a tensor buffer: no strategy (DDP buffer broadcasts, FSDP buffer casts)
    touches them; every rank fits the same ones from the same gathered rows. Saved beside the
    thresholds (checkpoints hold trainable weights only).
    """

    def __init__(self) -> None:
        self.rows = [list(IDENTITY), list(IDENTITY)]

    def __call__(self, margin: torch.Tensor, shift: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """margin [B], shift [B], labelled bool [B] -> combined log-odds z [B] (float32)."""
        w = torch.tensor(self.rows, dtype=torch.float64, device=margin.device)[labelled.to(margin.device).long()]  # [B, 3]
        return (w[:, 0] * margin.double() + w[:, 1] * shift.double() + w[:, 2]).float()

    def set_case(self, case: int, values) -> None:
        self.rows[case] = [float(v) for v in values]

    def as_list(self) -> list[list[float]]:
        return [list(row) for row in self.rows]

    def load_list(self, rows) -> None:
        """From ``as_list()`` (a checkpoint's or an export's ``combination``); checked."""
        values = torch.as_tensor(rows, dtype=torch.float64)
        if values.shape != (2, 3) or not bool(torch.isfinite(values).all()):
            raise ValueError(f"combination must be 2 x 3 finite numbers, got {rows!r}")
        self.rows = values.tolist()


def negative_log_likelihood(weights: torch.Tensor, margin: torch.Tensor, shift: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy of P = sigmoid(a m + b d + c) on these rows (float64)."""
    z = weights[0] * margin + weights[1] * shift + weights[2]
    return nn.functional.binary_cross_entropy_with_logits(z, labels, reduction="sum")


def fit_case(margin: torch.Tensor, shift: torch.Tensor, labels: torch.Tensor, prior: float = 1.0,
             min_gain: float = 11.34) -> dict:
    """Fit (a, b, c) on one case's rows; keep the identity unless the fit is clearly better.

    Logistic regression with a Gaussian prior of precision ``prior`` around the identity (so a
    column that is all zeros, the shift without evidence or the margin without text, keeps its
    weight at 1), by L-BFGS in float64. The fit is adopted only when twice its gain in
    log-likelihood on these rows is at least ``min_gain`` (11.34: the 1 % point of chi-square with 3
    degrees of freedom, what three fitted numbers gain on rows where the identity is right), so a
    few hundred rows cannot move a model that was fine. Returns ``weights`` (3 floats),
    ``adopted``, and the mean losses ``nll_identity`` / ``nll_fit`` per row.
    """
    m, d, y = (t.detach().double().reshape(-1).cpu() for t in (margin, shift, labels))
    identity = torch.tensor(IDENTITY, dtype=torch.float64)
    n = len(y)
    if n == 0:
        return {"weights": list(IDENTITY), "adopted": False, "nll_identity": float("nan"), "nll_fit": float("nan")}
    w = identity.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = negative_log_likelihood(w, m, d, y) + 0.5 * prior * ((w - identity) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    fitted = w.detach()
    with torch.no_grad():
        before = float(negative_log_likelihood(identity, m, d, y))
        after = float(negative_log_likelihood(fitted, m, d, y))
    adopted = bool(torch.isfinite(fitted).all()) and 2 * (before - after) >= min_gain
    return {"weights": fitted.tolist() if adopted else list(IDENTITY), "adopted": adopted,
            "nll_identity": before / n, "nll_fit": after / n}
