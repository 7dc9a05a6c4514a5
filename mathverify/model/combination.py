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
They start at (1, 1, 0), which is the training sum exactly; ``fit_cases`` fits them by logistic
regression on held-out validation rows (``callbacks.combination.FitCombination``: a case with
enough rows fits its own text weight a, its intercept following it, c = (1 - a) * mean(m), and
keeps the evidence's b = 1 unless asked; a case with too few rows gets only a text weight, fitted
on the rows of both cases), so text that is noise on held-out rows gets a ~ 0 and text that helps
keeps its weight (the callback adopts the fit whatever its gain; ``fit_cases`` can gate it by a
chi-square test). Only test, predict and the Python API use the fitted numbers: training and the
validation loss see m + d.
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


CHI2_1PCT = {1: 6.63, 2: 9.21, 3: 11.34, 4: 13.28, 5: 15.09}  # 1 % points of chi-square by degrees of freedom


def fit_cases(margin: torch.Tensor, shift: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor,
              free=(0, 1), prior: float = 1.0, min_gain: float | None = None, centred=()) -> dict:
    """Fit one text weight a shared by both cases and (b, c) per case in ``free``; identity unless clearly better.

    The text model is one model whichever case a row is in, so its weight is fitted on all rows:
    a case with few validation rows (``free`` leaves it out) still gets the text weight the other
    case's rows support, with its own (b, c) kept at (1, 0). The evidence differs by case (labelled
    siblings or none), so each free case fits its own b and c. Logistic regression with a
    Gaussian prior of precision ``prior`` around the identity (a column that is all zeros, the
    shift without evidence or the margin without text, keeps its weight at 1), by L-BFGS in float64.
    Adopted only when twice the gain in log-likelihood is at least ``min_gain`` (None: the 1 %
    point of chi-square for the numbers fitted, 1 + 2 per free case), so a few hundred rows cannot
    move a model that was fine. ``centred``: cases (not in ``free``) whose bias follows the text
    weight, c = (1 - a) * mean(m over the case's rows): the text is re-weighted around its own mean,
    so its weight moves no row's base rate away from the training sum m + d (no label is read for
    c, so it cannot take on the validation questions' own rate of right rows). Returns ``rows``
    (2 x 3, as ``Combination.rows``), ``adopted``, and the mean losses per row ``nll_identity`` /
    ``nll_fit``.
    """
    m, d, y = (t.detach().double().reshape(-1).cpu() for t in (margin, shift, labels))
    case = labelled.detach().reshape(-1).cpu().bool().long()  # [N] 0 unseen, 1 seen
    free = sorted({int(c) for c in free})
    centred = sorted({int(c) for c in centred} - set(free))
    identity_rows = [list(IDENTITY), list(IDENTITY)]
    n = len(y)
    if n == 0:
        return {"rows": identity_rows, "adopted": False, "nll_identity": float("nan"), "nll_fit": float("nan")}
    if min_gain is None:
        min_gain = CHI2_1PCT[1 + 2 * len(free)]
    start = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # a, b_unseen, c_unseen, b_seen, c_seen
    mask = torch.tensor([1.0, float(0 in free), float(0 in free), float(1 in free), float(1 in free)], dtype=torch.float64)
    # [2]: per case, the margin's mean where its bias follows the text weight, else 0
    tied = torch.tensor([float(m[case == k].mean()) if k in centred and bool((case == k).any()) else 0.0
                         for k in (0, 1)], dtype=torch.float64)
    w = start.clone().requires_grad_(True)

    def used(params):
        """The free parameters -> the five numbers a row is scored with (left-out cases at (1, 0))."""
        params = start + mask * (params - start)
        bias = torch.stack([params[2], params[4]]) + (1 - params[0]) * tied  # [2]
        return torch.stack([params[0], params[1], bias[0], params[3], bias[1]])

    def nll(numbers):
        b, c = torch.stack([numbers[1], numbers[3]])[case], torch.stack([numbers[2], numbers[4]])[case]
        return nn.functional.binary_cross_entropy_with_logits(numbers[0] * m + b * d + c, y, reduction="sum")

    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = nll(used(w)) + 0.5 * prior * ((mask * (w - start)) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        fitted = used(w.detach())
        before, after = float(nll(start)), float(nll(fitted))
    adopted = bool(torch.isfinite(fitted).all()) and 2 * (before - after) >= min_gain
    a, b0, c0, b1, c1 = fitted.tolist()
    return {"rows": [[a, b0, c0], [a, b1, c1]] if adopted else identity_rows, "adopted": adopted,
            "nll_identity": before / n, "nll_fit": after / n}
