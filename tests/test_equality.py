"""Answer equality within a question (mathverify.evidence.equality): the key stage, then math-verify."""

from __future__ import annotations

import pytest

from mathverify.evidence import equality
from mathverify.evidence.answers import answer_key
from mathverify.evidence.equality import all_classes, is_symbolic, question_classes


def same_answer(a: str, b: str) -> bool:
    """The evidence's notion of equality: one class among the question's answers."""
    ka, kb = answer_key(a), answer_key(b)
    if ka == kb:
        return True
    aliases = question_classes({ka: 1, kb: 1})
    return aliases.get(ka, ka) == aliases.get(kb, kb)


MUST_MEET = [
    # hand-made: what the key stage alone missed
    (r"3\sqrt{2}", r"\sqrt{18}"), (r"\{2,3\}", r"\{3,2\}"), (r"2^{10}", "1024"), ("x=2, y=3", "(2,3)"),
    (r"\frac{\sqrt2}{2}", r"\frac{1}{\sqrt2}"), (r"2\sqrt{3}", r"\sqrt{12}"), (r"\frac{\pi}{4}", r"\pi/4"),
    (r"\pi r^2", r"r^2\pi"), (r"x \in [2,5]", "[2,5]"),
    # the key stage: numbers as exact fractions, spelling
    (r"\frac{1}{2}", "0.5"), (r"\dfrac{3}{4}", "0.75"), ("$1,000.00", "1000"), ("18 dollars", "18"), ("(1, 2)", "(1,2)"),
    # pairs of real MATH Level-5 answers (benchmarks/data/math, both labelled correct by the gold grader)
    ("sqrt(25)", "5"), (r"\frac{a-1}{1-a}", "-1"), ("10 * 2^9", "5120"), (r"\sqrt{89}", "sqrt(89)"),
    ("5*sqrt(6)", "sqrt(150)"), ("-221_3", "-221"), ("6√2", "6 * sqrt(2)"), ("7 + √11", r"7 + \sqrt{11}"),
    ("1112112₃", "1112112_3"),
    # Unicode against LaTeX and ASCII (math-verify alone reads "6√2" as 6 and "√27" as nothing)
    ("√27", r"3\sqrt{3}"), ("√27", "3*sqrt(3)"), ("(1 + √3) / 2", r"\frac{1+\sqrt{3}}{2}"), ("25π", r"25\pi"),
]
MUST_NOT_MEET = [
    # hand-made: what the key stage used to merge
    ("5x", "5"), ("2x", "2y"), ("1 2", "12"), ("f(x)=2x", "f(x)=2"), ("9n", "9"),
    # no float tolerance between two numbers; order and brackets of intervals matter
    ("0.333", r"\frac{1}{3}"), ("3.14", r"\pi"), ("(1,2)", "[1,2]"), ("x+1", "x-1"),
    # real answers that differ (MATH Level-5, one or both wrong)
    ("7 + √11", "7 + sqrt(69)"), ("60/43", "1.3953488372093023"), ("4√3", "2√3"), ("√27", "sqrt(150)"),
    ("6√2", "6"),
    # prose stays with its exact key (GSM8K answers written as sentences are graded wrong)
    ("Jamaar can buy 3 plums.", "3"), ("The cost of one monitor is $300.", "300"),
]


@pytest.mark.parametrize("a,b", MUST_MEET)
def test_equal_answers_meet(a, b):
    assert same_answer(a, b) and same_answer(b, a)


@pytest.mark.parametrize("a,b", MUST_NOT_MEET)
def test_different_answers_stay_apart(a, b):
    assert not same_answer(a, b) and not same_answer(b, a)


def test_only_formulas_go_to_math_verify():
    assert is_symbolic(r"3\sqrt{2}") and is_symbolic("sqrt(25)") and is_symbolic("x=2,y=3")
    assert not is_symbolic("1/2") and not is_symbolic("12") and not is_symbolic("")
    assert not is_symbolic(answer_key("Jamaar can buy 3 plums."))


def test_classes_have_the_most_voted_representative_whatever_the_order():
    votes = {r"\sqrt{18}": 1, r"3\sqrt{2}": 3, "4": 2, r"\frac{\sqrt{2}}{2}": 1, r"\frac{1}{\sqrt{2}}": 1}
    aliases = question_classes(votes)
    assert aliases[r"\sqrt{18}"] == r"3\sqrt{2}" and r"3\sqrt{2}" not in aliases
    # a tie in votes: the shorter key represents the class
    assert aliases[r"\frac{\sqrt{2}}{2}"] == r"\frac{1}{\sqrt{2}}" or aliases[r"\frac{1}{\sqrt{2}}"] == r"\frac{\sqrt{2}}{2}"
    assert "4" not in aliases
    assert question_classes(dict(reversed(list(votes.items())))) == aliases
    assert question_classes({"12": 3, "7": 1}) == {}  # plain numbers: nothing for math-verify to do


def test_many_questions_are_spread_over_processes(monkeypatch):
    questions = {f"q{i}": {r"3\sqrt{2}": 2, r"\sqrt{18}": 1, str(i): 1} for i in range(6)}
    questions["numbers"] = {"1": 1, "2": 1}
    one = all_classes(questions, workers=1)
    monkeypatch.setattr(equality, "PARALLEL_MIN_QUESTIONS", 1)
    assert all_classes(questions, workers=2) == one
    assert set(one) == {f"q{i}" for i in range(6)} and one["q0"] == {r"\sqrt{18}": r"3\sqrt{2}"}
