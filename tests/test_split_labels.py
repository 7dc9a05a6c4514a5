import pytest

from mathverify.data.labels import LabelError, parse_label
from mathverify.data.split import digest_fraction, question_digest, split_by_question


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), (1, True), (0, False), (1.0, True), ("True", True), ("false", False),
    (" TRUE ", True), ("1", True), ("0", False), ("yes", True), ("No", False), ("t", True), ("F", False),
])
def test_parse_label_accepts_the_usual_spellings(value, expected):
    assert parse_label(value) is expected


@pytest.mark.parametrize("value", [None, float("nan"), 2, "maybe", "", "10", [], 0.5])
def test_parse_label_rejects_everything_else(value):
    with pytest.raises(LabelError):
        parse_label(value)


def test_digest_is_stable_and_normalised():
    assert question_digest("What is  2+2?") == question_digest("what is 2+2? ")
    # sha1 of the normalised text, the same in every process (unlike hash())
    assert question_digest("a") == "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
    assert 0.0 <= digest_fraction(question_digest("a")) < 1.0


def test_split_by_count_keeps_questions_whole():
    questions = [f"q{i // 3}" for i in range(300)]  # 100 questions, 3 rows each
    digests = [question_digest(q) for q in questions]
    chosen = split_by_question(digests, 30)
    val = [q for q, d in zip(questions, digests) if d in chosen]
    train = [q for q, d in zip(questions, digests) if d not in chosen]
    assert 30 <= len(val) <= 32
    assert not set(val) & set(train)
    assert chosen == split_by_question(list(reversed(digests)), 30)  # order-independent


def test_split_by_fraction_and_bad_sizes():
    digests = [question_digest(f"q{i}") for i in range(2000)]
    chosen = split_by_question(digests, 0.1)
    assert 140 < len(chosen) < 260
    with pytest.raises(ValueError):
        split_by_question(digests, 1.5)
    with pytest.raises(ValueError):
        split_by_question(digests, 0)
    with pytest.raises(ValueError, match="every question"):
        split_by_question(digests[:5], 100)
