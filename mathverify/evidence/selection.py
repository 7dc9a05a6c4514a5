"""Best-of-N: pick one answer per question by P(True), against majority voting and agreement.

Rows are grouped by question digest (``split.question_digest``) and compared by canonical answer
key (``answers.answer_key``). Pure functions over plain lists, shared by the validation metrics
(``callbacks.selection``) and ``predict``'s per-question output.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence


def group_rows(digests: Sequence[str]) -> dict[str, list[int]]:
    """Question digest -> positions of its rows, in order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, digest in enumerate(digests):
        groups[digest].append(position)
    return groups


def best_rows(probs: Sequence[float], digests: Sequence[str], keys: Sequence[str] | None = None) -> dict[str, int]:
    """Question digest -> position of its highest-P(True) row.

    Ties go to the smaller answer key (content, not the order rows were gathered in, so any
    number of ranks picks the same answer), then to the first position."""
    def rank(i: int):
        return (probs[i], _neg(keys[i]) if keys is not None else (), -i)

    return {d: max(rows, key=rank) for d, rows in group_rows(digests).items()}


def _neg(text: str) -> tuple:
    """A sort key under which a smaller string ranks higher with ``max``."""
    return tuple(-ord(c) for c in text) + (1,)


def question_metrics(probs: Sequence[float], labels: Sequence[int], digests: Sequence[str],
                     keys: Sequence[str]) -> dict[str, float]:
    """Per-question and agreement scores of one set of labelled rows.

    - ``select_acc``: share of questions whose highest-P(True) row is correct (best-of-N);
    - ``vote_acc``: the same for the most frequent answer (majority voting, self-consistency);
    - ``select_oracle``: share of questions with at least one correct row (the ceiling of both);
    - ``agreement_acc``: row accuracy of the rule "True iff another row of the question gave the
      same answer", with no model at all.
    """
    groups = group_rows(digests)
    if not groups:
        return {}
    best = best_rows(probs, digests, keys)
    select = vote = oracle = 0
    agree_right = 0
    for digest, rows in groups.items():
        select += labels[best[digest]] == 1
        counts = Counter(keys[i] for i in rows)
        top_key = min(counts, key=lambda k: (-counts[k], k))  # a tie in votes: the smaller key, on any rank
        vote += any(labels[i] == 1 for i in rows if keys[i] == top_key)
        oracle += any(labels[i] == 1 for i in rows)
        agree_right += sum((counts[keys[i]] > 1) == (labels[i] == 1) for i in rows)
    n = len(groups)
    return {"select_acc": select / n, "vote_acc": vote / n, "select_oracle": oracle / n,
            "agreement_acc": agree_right / len(digests)}
