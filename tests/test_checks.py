"""A solution's own checks (mathverify.evidence.checks): arithmetic steps, the answer's support, the bit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mathverify.evidence.checks import answer_supported, arithmetic, flawed

# (text, equalities checked, wrong ones)
ARITHMETIC = [
    ("So he runs 3 x 60 = 180 meters a day.", 1, 0),
    ("She collects $13 \\times 10 = 130$ shells.", 1, 0),
    ("the mileage is 41 - (4 + 24) = 41 - 28 = 13 miles", 2, 0),
    ("$\\frac{3}{4} \\cdot 400 = 300$", 1, 0),
    ("$175,000 - $50,000 = $125,000", 1, 0),
    ("A third of 750 is 750 * 0.33 = 250.", 1, 0),  # a rounding within 1 %
    ("2 / 3 = 0.67", 1, 0),  # rounded to the decimals shown
    ("which is 2^{10} = 1024", 1, 0),
    ("4(87) - 13 = 335", 1, 0),  # implicit multiplication: 348 - 13
    ("The total is 430 + 750 + 300 + 700 = 1880 dollars.", 1, 1),
    ("(340 + 775) - 576 = 649", 1, 1),
    ("so 2 / 3 = 0.6", 1, 1),
    ("35 + 40 - (35 + 40) * 0.20 = 35 + 40 - 7.5 = 67.5", 2, 1),  # the first step is wrong, the second right
    # Skipped, never guessed: variables, functions, units with exponents, bullets, percent-of, no operation
    ("Let x = 5. Then 2x + 3 = 13.", 0, 0),
    ("f(2) = 2^7 - 3(2^3) + 2 = 106", 1, 0),  # f(2) is skipped; the arithmetic after it is checked
    ("a - b + 5 = 0 so a - b = -5", 0, 0),
    ("- 2 * 2 = 4 pillow cases", 1, 0),  # a list bullet, not a minus sign
    ("20% of (15 + 3 + 2) = 4", 0, 0),
    ("so n = 12 and 12 = 12", 0, 0),
    ("The area is 5 cm^2 = 500 mm^2", 0, 0),
    ("no equalities at all", 0, 0),
]


@pytest.mark.parametrize("text,checked,wrong", ARITHMETIC)
def test_arithmetic_checks_plain_number_steps_and_skips_formulas(text, checked, wrong):
    assert arithmetic(text) == (checked, wrong)


# (solution, answer, supported)
SUPPORT = [
    ("3 x 60 = 180, and 3 x 180 = 540 meters.\n\nThe final answer is $\\boxed{540}$.", "540", True),
    ("So 3 x 60 = 180 meters. The answer is \\boxed{540}.", "540", False),  # only the box says 540
    ("He pays $1,000.00 in all. \\boxed{1000}", "$1,000", True),
    ("Half of it: $\\frac{1}{2}$. \\boxed{0.5}", "0.5", True),
    ("x = 3\\sqrt{2}, so the side is $3 \\sqrt{2}$. \\boxed{3\\sqrt{2}}", "3\\sqrt{2}", True),
    ("The roots are 2 and 3. \\boxed{\\sqrt{18}}", "\\sqrt{18}", False),
    # a contest code solution: the program's output reaches the answer, or crashes and the answer is a guess
    ("<llm-code>\nprint(12 * 5)\n</llm-code>\n<llm-code-output>\n60\n</llm-code-output>\nSo \\boxed{60}.", "60", True),
    ("<llm-code>\nprint(apple)\n</llm-code>\n<llm-code-output>\nNameError: name 'apple' is not defined\n"
     "</llm-code-output>\nSo \\boxed{58}.", "58", False),
    ("Anything at all. \\boxed{}", "", True),  # empty answer: its own feature, not a flaw
]


@pytest.mark.parametrize("solution,answer,supported", SUPPORT)
def test_answer_supported_only_when_the_body_reaches_the_answer(solution, answer, supported):
    assert answer_supported(solution, answer) is supported


def test_flawed_is_a_wrong_step_or_an_unsupported_answer():
    assert not flawed("9 + 9 = 18 apples. \\boxed{18}", "18")
    assert flawed("9 + 9 = 19 apples. \\boxed{19}", "19")  # a wrong step
    assert flawed("9 + 9 = 18 apples. \\boxed{20}", "20")  # the answer is not where the work led
    # the final statement itself is not read: "= 20" inside the box is not a step of the body
    assert not flawed("9 + 9 = 18 apples. \\boxed{x = 18}", "18")


def test_synthetic_crashed_code_rows_are_flawed_and_right_rows_are_not():
    """The demo's generator: a crashed program followed by a guessed answer is unsupported; no
    right solution is flagged (its steps and answer agree)."""
    from mathverify.data.synthetic import generate_examples

    examples = list(generate_examples(1500, seed=0))
    right = [e for e in examples if e.error_kind is None]
    crashed = [e for e in examples if e.error_kind == "crashed_code"]
    assert right and crashed
    assert not any(flawed(e.row["solution"], e.row["answer"]) for e in right)
    assert sum(flawed(e.row["solution"], e.row["answer"]) for e in crashed) > 0.9 * len(crashed)


REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "gsm8k"


def test_on_real_solutions_flawed_rows_are_far_less_often_right():
    """The first 3,000 solutions of the real GSM8K set (eight models, benchmarks/data)."""
    rows = [json.loads(line) for part in ("train", "test") for line in gzip.open(REAL / f"{part}.jsonl.gz", "rt", encoding="utf-8")]
    rows = sorted(rows, key=lambda r: r["source_row"])[:3000]
    bits = [flawed(r["solution"], r["answer"]) for r in rows]
    bad = [r["is_correct"] for r, b in zip(rows, bits) if b]
    good = [r["is_correct"] for r, b in zip(rows, bits) if not b]
    assert 0.05 < len(bad) / len(rows) < 0.3
    assert sum(bad) / len(bad) < 0.35 < 0.65 < sum(good) / len(good)


def test_flawed_in_order_keeps_the_stream_order_across_worker_processes(monkeypatch):
    """A stream longer than one chunk goes to worker processes; every item comes back once, in order,
    with the bit computed here for it."""
    from mathverify.evidence import checks

    monkeypatch.setattr(checks, "CHUNK_ROWS", 50)
    items = [(i, f"{i} + 1 = {i + 1 + (i % 7 == 0)} \\boxed{{{i + 1}}}", str(i + 1)) for i in range(400)]
    out = list(checks.flawed_in_order(items, lambda item: (item[1], item[2]), workers=2))
    assert [item for item, _ in out] == items
    assert [bit for _, bit in out] == [i % 7 == 0 for i in range(400)]  # every 7th step is wrong


# Long runs that no match can use: with backtracking regular expressions these cost seconds to hours
# (quadratic in a run of numbers without '=', cubic in a run of letters after a number); read in
# one linear pass they take milliseconds. 200 KB each, a second each allowed (linear: ~0.1 s).
PATHOLOGICAL = {
    "numbers without an equality": "1 " * 100_000 + "a = b",
    "a run of letters after a number": "1" + "a" * 200_000 + "!",
    "digits then a letter": "1" * 200_000 + "a",
    "thousands groups": "1" + ",234" * 50_000 + "5",
    "one long sum": "1+" * 100_000 + "1 = 2",
    "nested roots never closed": "√(" * 100_000,
    "roots and scripts": "2√3π²₃" * 40_000,
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_long_runs_of_numbers_or_letters_are_read_in_linear_time(name):
    import time

    from mathverify.evidence.answers import answer_key

    text = PATHOLOGICAL[name]
    started = time.perf_counter()
    answer_key.cache_clear()
    answer_key(text)
    flawed(text, text)
    arithmetic(text)
    assert time.perf_counter() - started < 1.0, f"{name}: not linear"
