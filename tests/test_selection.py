"""Best-of-N scores break ties by content, so any gather order (any number of ranks) gives the same."""

from __future__ import annotations

import itertools

from mathverify.evidence.selection import best_rows, question_metrics

# One question, a tie in votes (7 and 8 twice each) and a tie in P(True) between two answers.
PROBS = [0.9, 0.2, 0.9, 0.4, 0.1]
LABELS = [0, 1, 1, 0, 1]
KEYS = ["8", "7", "7", "8", "5"]


def test_every_order_of_the_rows_gives_the_same_scores():
    results = set()
    for order in itertools.permutations(range(len(PROBS))):
        values = question_metrics([PROBS[i] for i in order], [LABELS[i] for i in order], ["q"] * len(order),
                                  [KEYS[i] for i in order])
        results.add(tuple(sorted(values.items())))
    assert len(results) == 1
    values = dict(results.pop())
    assert values["vote_acc"] == 1.0  # the tie 7 vs 8 goes to the smaller key, "7" (labelled right)
    assert values["select_acc"] == 1.0  # the P(True) tie at 0.9 goes to "7" too


def test_best_row_ties_go_to_the_smaller_answer():
    assert best_rows([0.5, 0.5], ["q", "q"], ["9", "10"]) == {"q": 1}
    assert best_rows([0.5, 0.5], ["q", "q"], ["10", "9"]) == {"q": 0}
    assert best_rows([0.5, 0.6], ["q", "q"]) == {"q": 1}
