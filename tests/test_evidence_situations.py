"""The evidence head sees, in training, the features prediction will give it for the same situation.

A training row's evidence is drawn by ``TrainingEvidence`` (labels hidden or shown, siblings thinned
or not); at test/predict time it is computed by ``eval_features`` from the index and the evaluated
file's own rows. For each situation a test row can be in, the training draw that stands for it must
give the very same vector, or the head learns one thing and is asked another.
"""

from __future__ import annotations

import pytest

from mathverify.evidence.index import FEATURES, EvidenceIndex, TrainingEvidence, eval_features, pool_of

# one question's four solutions: (answer key, label, flawed)
ROWS = [("18", 1, False), ("18", 1, True), ("20", 0, False), ("7.5", 0, False)]


def _training_vector(own: int, hide_labels: float) -> list[float]:
    """The row ``own`` of the question as training shows it, siblings not thinned."""
    index = EvidenceIndex()
    for key, label, flawed in ROWS:
        index.add("q", key, label, flawed)
    key, label, flawed = ROWS[own]
    shown = TrainingEvidence(index, seed=0, hide_labels=hide_labels, thin_siblings=0.0)
    return shown("q", key, label, passes=0, row_index=own, flawed=flawed)


@pytest.mark.parametrize("own", range(len(ROWS)))
def test_an_unseen_question_gets_the_vector_of_a_training_row_with_hidden_labels(own):
    """Test file: the question's four rows, no label anywhere (the index does not know it)."""
    pool = pool_of(("new", key, flawed) for key, _, flawed in ROWS)
    key, _, flawed = ROWS[own]
    given = eval_features(EvidenceIndex(), pool, "new", key, "pool", flawed=flawed)
    assert given == _training_vector(own, hide_labels=1.0)
    assert given[FEATURES.index("no_labels")] == 1.0


@pytest.mark.parametrize("own", range(len(ROWS)))
def test_a_test_row_whose_siblings_are_labelled_training_rows_gets_the_vector_of_a_training_row_with_labels(own):
    """Contest layout: the other three solutions are labelled training rows; the row is in the test file."""
    index = EvidenceIndex()
    for i, (key, label, flawed) in enumerate(ROWS):
        if i != own:
            index.add("q", key, label, flawed)
    key, _, flawed = ROWS[own]
    pool = pool_of([("q", key, flawed)])
    given = eval_features(index, pool, "q", key, "pool", flawed=flawed)
    assert given == _training_vector(own, hide_labels=0.0)
    assert given[FEATURES.index("no_labels")] == 0.0


@pytest.mark.parametrize("own", range(len(ROWS)))
def test_a_held_out_seen_row_gets_the_vector_of_a_training_row_with_labels(own):
    """The validation's seen view: the row's vote is in the index without its label (``own_in="index"``)."""
    index = EvidenceIndex()
    for i, (key, label, flawed) in enumerate(ROWS):
        index.add("q", key, None if i == own else label, flawed)
    key, _, flawed = ROWS[own]
    assert eval_features(index, None, "q", key, "index", flawed=flawed) == _training_vector(own, hide_labels=0.0)


def test_the_situations_differ_from_each_other():
    """The three vectors above are not all one vector (the tests could not tell situations apart)."""
    hidden, shown = _training_vector(0, hide_labels=1.0), _training_vector(0, hide_labels=0.0)
    assert hidden != shown and _training_vector(0, 1.0) != _training_vector(2, 1.0)
