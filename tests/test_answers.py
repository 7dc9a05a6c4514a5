"""Answer keys: real-looking spellings that must meet, and near misses that must stay apart."""

from __future__ import annotations

import pytest

from mathverify.evidence.answers import answer_key, last_boxed

MUST_MEET = [
    ("18", "18.0"), ("18", "$18"), ("18", "\\$18"), ("18", "\\boxed{18}"), ("18", "18 dollars"),
    ("18", "\\text{18}"), ("18", " 18 "), ("18", "18."), ("18", "The answer is 18"), ("18", "x = 18"),
    ("1000", "1,000"), ("1000", "$1,000.00"), ("1234567", "1,234,567"), ("50", "50\\%"), ("50", "50%"),
    ("0.5", "1/2"), ("0.5", "\\frac{1}{2}"), ("0.5", "\\dfrac12"), ("0.5", "\\tfrac{1}{2}"), ("0.5", "\\frac12"),
    ("-3", "-3.0"), ("-0.75", "-\\frac{3}{4}"), ("2.5", "2\\frac{1}{2}"), ("5", "5 \\text{ cm}"),
    ("90", "90^\\circ"), ("90", "90^{\\circ}"), ("\\left( 1, 2 \\right)", "(1,2)"), ("(3.0, 4)", "(3,4)"),
    ("\\sqrt{3}", "\\sqrt3"), ("2\\sqrt{3}", "2 \\sqrt{3}"), ("\\frac{\\pi}{2}", "\\dfrac{\\pi}{2}"),
    ("(B)", "B"), ("\\text{(C)}", "c"), ("3", "\\boxed{\\text{3}}"), ("12", "12\\,\\text{hours}"),
    ("7", "$\\boxed{7}$"), ("4", "answer: 4"),
    # Unicode maths, as models without LaTeX write it
    ("6\\sqrt{2}", "6√2"), ("7+\\sqrt{11}", "7 + √11"), ("\\sqrt{x+1}", "√(x+1)"), ("\\sqrt{\\sqrt{x}+1}", "√(√x + 1)"),
    ("25\\pi", "25π"), ("\\pi r^2", "π r²"), ("x^{10}", "x¹⁰"), ("1112112_3", "1112112₃"), ("-5", "−5"),
    ("2.5", "2½"), ("-\\infty", "-∞"), ("3*\\sqrt{2}", "3·√2"),
]
MUST_NOT_MEET = [
    ("18", "81"), ("18", "-18"), ("1/3", "0.333"), ("0.5", "5"), ("1,2", "12.5"), ("2\\sqrt{3}", "\\sqrt{12}"),
    ("(1,2)", "(2,1)"), ("x+1", "x-1"), ("\\frac{x}{2}", "0"), ("1000", "100"), ("3", "3\\pi"), ("A", "B"),
    ("10", "10^2"), ("1.5", "15"),
    ("6", "6√2"), ("12.5π", "25π"), ("4√3", "2√3"), ("√(x+1)", "√x+1"), ("x²", "x2"), ("1112112₃", "1112112"),
]


@pytest.mark.parametrize(("left", "right"), MUST_MEET)
def test_equal_answers_meet(left, right):
    assert answer_key(left) == answer_key(right)


@pytest.mark.parametrize(("left", "right"), MUST_NOT_MEET)
def test_different_answers_stay_apart(left, right):
    assert answer_key(left) != answer_key(right)


def test_numbers_are_exact_fractions():
    assert answer_key("0.50") == "1/2" and answer_key("4/8") == "1/2" and answer_key("-6/3") == "-2"


def test_last_boxed_takes_balanced_braces():
    assert last_boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{open") is None


def test_empty_and_odd_values():
    assert answer_key("") == "" and answer_key(None) == "" and answer_key(18) == answer_key("18")
    assert answer_key("\\frac{1}{0}") == "\\frac{1}{0}"  # no crash on a division by zero
