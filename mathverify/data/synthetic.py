"""Synthetic contest-style rows (GSM8K-like word problems) for the demo and the tests.

Each row is ``{"question", "answer", "solution", "is_correct"}`` like the contest data:
``answer`` is always the solution's own last ``\\boxed{}`` value, and ``is_correct`` says
whether that value equals the true result. Every question gets 1 to 12 consecutive rows (mean
5.5, ``ROWS_PER_QUESTION``), so splits must be made by question, as in the real data. Right
solutions share the true answer; wrong ones scatter, except that 30 % of questions have a common
mistake which 40 % of their wrong solutions repeat (the same wrong answer). For 6,000 rows with
seed 0, P(correct) is 0.11 / 0.37 / 0.65 / 0.76 / 0.90 when 0 / 1 / 2 / 3 / 4+ other solutions
of the question reached the same answer; the rule "correct iff another solution agrees" scores
0.74 against 0.61 for "always False" (``mathverify.evidence.index`` uses this signal).

About 40 % of rows are correct. Before forced styles, solutions are ~70 % prose with
LaTeX-ish steps and ~30 % "Let's solve this problem using Python code." with ``<llm-code>`` /
``<llm-code-output>``; ``crashed_code`` rows are always code and ``negative_result`` rows
always prose, which brings code style to ~48 % of all rows.

Error kinds of the incorrect rows: intended draw shares (``ERROR_KIND_SHARES``), then the
realised shares of the incorrect rows / of all rows for 3,000 rows with seed 0 (40.4 % correct):

* ``crashed_code`` (30 % -> 49 % / 29 %): the program's last line misspells the result
  variable (``apple`` for ``apples``), ``<llm-code-output>`` shows ``Traceback ... NameError``,
  and the closing sentence boxes a guessed number near the true result anyway. The code itself
  is right (a hand-computed literal shows the true value); only the guess is wrong.
* ``negative_result`` (30 % -> 11 % / 7 %): one "gives away" / "loses" step is computed the
  wrong way round (question's number minus the running total, ``20 - 84 = -64``), so the count
  and the boxed answer go negative. The sentence still restates the question's number.
* ``wrong_operation`` (25 % -> 24 % / 14 %): one step uses the operator that contradicts the
  question's keyword ("gives away" -> ``+``, "each of the 5 boxes holds" -> ``+``, "shares
  equally" -> ``\\times``); the arithmetic is right. The solution restates the keyword right
  next to the operator, so the contradiction is local.
* ``arithmetic_slip`` (8 % -> 8 % / 5 %): one step result is off by 1-3 or 10; later steps
  compute correctly from the wrong value, so the error reaches the boxed answer. In code style
  the slipped step is a hand-computed literal (``apples = 8  # 12 - 5``); 20 % of correct code
  steps are written that way too, so the literal alone does not give the label away.
* ``wrong_number`` (7 % -> 7 % / 4 %): one step copies a number (off by 1-5) that is not in
  the question.

Why these kinds: crashed code and negative counts are realistic failure modes of generated
solutions that a small model can spot from a few tokens (a ``Traceback``, a minus sign in the
answer), so a tiny randomly initialised model learns them within a few hundred CPU steps.
``wrong_operation`` needs two things at once (the keyword and the operator next to it);
slips and wrong numbers need arithmetic or copying from the question.

If a drawn kind cannot be applied to a problem (no give/lose step for ``negative_result``,
a division made inexact, a count made non-positive) the other kinds are tried in the order
above, so most fallbacks become ``crashed_code``; hence its larger and ``negative_result``'s
smaller realised share. Accuracy ceilings on these rows (majority baseline: ~60 %): spotting only
crashes and negative answers gives 40 % + 36 % ~= 76 %; adding ``wrong_operation`` ~= 91 %;
the last ~9 % need arithmetic.

Output depends only on ``seed`` (``random.Random``; no global random state, no ``hash()``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CORRECT_SHARE = 0.4
CODE_STYLE_SHARE = 0.3
HAND_COMPUTED_SHARE = 0.2  # of correct arithmetic steps in code style
ERROR_KIND_SHARES = {"crashed_code": 0.3, "negative_result": 0.3, "wrong_operation": 0.25,
                     "arithmetic_slip": 0.08, "wrong_number": 0.07}
CSV_COLUMNS = ("question", "is_correct", "answer", "solution")  # the contest's column order
# Solutions per question (drawn uniformly from this tuple): 1 to 12, mean 5.5, like sampled solutions.
ROWS_PER_QUESTION = (1, 2, 3, 4, 4, 5, 6, 6, 8, 10, 12)
COMMON_MISTAKE_SHARE = 0.25  # questions that have a mistake several wrong solutions share
COMMON_MISTAKE_REUSE = 0.35  # chance that a wrong solution of such a question repeats it

# (name, subject pronoun, object pronoun)
PEOPLE = tuple((name, "he", "him") for name in ("Tom", "Liam", "Noah", "Ethan", "Omar", "Lucas")) + tuple(
    (name, "she", "her") for name in ("Maria", "Ava", "Mia", "Sofia", "Priya", "Zoe"))
OBJECTS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells",
           "candies", "balloons", "stamps", "oranges")
CONTAINERS = (("boxes", "box"), ("bags", "bag"), ("jars", "jar"), ("crates", "crate"), ("baskets", "basket"))

# For each correct operator, the ones a wrong_operation error may use instead.
WRONG_OPERATORS = {"+": ("-", "*"), "-": ("+",), "*": ("+",), "/": ("*", "-")}
LATEX_OPERATOR = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}
PYTHON_OPERATOR = {"+": "+", "-": "-", "*": "*", "/": "//"}
# start kind -> (range of the left number or None, range of the right number, follow-up step counts)
START_RANGES = {"has": (None, (10, 60), (1, 1, 2)), "groups": ((2, 12), (2, 15), (0, 1, 1, 2)),
                "rate": ((2, 20), (2, 10), (0, 1, 1, 2))}
STEP_OPERATOR = {"has": "=", "groups": "*", "rate": "*", "buy": "+", "receive": "+",
                 "give": "-", "lose": "-", "share": "/", "sell": "*"}

QUESTION_TEXT = {
    "has": "{Name} has {R} {obj}.",
    "groups": "{Name} has {L} {cpl}, and each of the {L} {cpl} holds {R} {obj}.",
    "rate": "{Name} collects {L} {obj} per hour for {R} hours.",
    "buy": "Then {he} buys {R} more {obj}.",
    "receive": "{Friend} gives {him} {R} more {obj}.",
    "give": "{He} gives away {R} {obj} to {Friend}.",
    "lose": "{He} loses {R} of the {obj} on the way home.",
    "share": "{He} then shares all the {obj} equally among {R} friends.",
    "sell": "{He} then sells all the {obj} for {R} dollars each.",
}
# {E} is the step's equation ("12 - 5 = 7"). The keyword is restated just before it, and the
# word right before each equation differs by step kind, so operator errors are visible locally.
PROSE_TEXT = {
    "has": "{Name} starts with ${R}$ {obj}.",
    "groups": "There are ${L}$ {cpl} with ${R}$ {obj} in each, so in all there are ${E}$ {obj}.",
    "rate": "At ${L}$ {obj} per hour for ${R}$ hours, {he} collects a total of ${E}$ {obj}.",
    "buy": "{He} buys ${R}$ more, so now {he} has ${E}$ {obj}.",
    "receive": "{Friend} gives {him} ${R}$ more, so {he} ends up with ${E}$ {obj}.",
    "give": "{He} gives away ${R}$, which leaves ${E}$ {obj}.",
    "lose": "{He} loses ${R}$ of them, so only ${E}$ {obj} remain.",
    "share": "Sharing them equally among ${R}$ friends, each friend gets ${E}$ {obj}.",
    "sell": "Selling them at ${R}$ dollars each, {he} earns ${E}$ dollars.",
}
# (lines assigning the step's numbers, result variable, expression template)
CODE_TEXT = {
    "has": ((), "{obj}", "{R}"),
    "groups": (("num_{cpl} = {L}", "{obj}_per_{csg} = {R}"), "{obj}", "{obj}_per_{csg} {op} num_{cpl}"),
    "rate": (("{obj}_per_hour = {L}", "hours = {R}"), "{obj}", "{obj}_per_hour {op} hours"),
    "buy": (("bought = {R}",), "{obj}", "{obj} {op} bought"),
    "receive": (("received = {R}",), "{obj}", "{obj} {op} received"),
    "give": (("given_away = {R}",), "{obj}", "{obj} {op} given_away"),
    "lose": (("lost = {R}",), "{obj}", "{obj} {op} lost"),
    "share": (("friends = {R}",), "{obj}_each", "{obj} {op} friends"),
    "sell": (("price = {R}",), "earnings", "{obj} {op} price"),
}


@dataclass(frozen=True)
class Step:
    kind: str        # key of STEP_OPERATOR
    left: int | None  # a number from the question, or None for "the running total"
    right: int        # the number the question gives for this step


@dataclass(frozen=True)
class Example:
    """A generated row plus what the generator knows about it (kept out of the row dict)."""
    row: dict
    true_answer: str
    error_kind: str | None  # None for correct rows
    question_id: int


def _apply(op: str, left: int | None, right: int) -> int | None:
    """Exact integer arithmetic; None for an inexact division (the story has no fractions)."""
    if op == "=":
        return right
    if op == "/":
        return left // right if left % right == 0 else None
    return {"+": left + right, "-": left - right, "*": left * right}[op]


def _evaluate(steps, operators=None, rights=None, slip=(None, 0), reverse=None):
    """[(left, right, operator, result, slipped)] per step, or None if some step is invalid.

    `operators` / `rights` override each step's operator / number; `slip` = (step, delta);
    `reverse` = a subtraction step computed the wrong way round (question's number minus the
    running total), so the count may go negative. `slipped` marks the step an error changed:
    True for the slip, "reverse" for the reversed step (its `left` is then the question's
    number), "crash" (set by _inject_error) for the step a crashed program never printed.
    """
    trace, total = [], None
    for i, step in enumerate(steps):
        op = operators[i] if operators else STEP_OPERATOR[step.kind]
        right = rights[i] if rights else step.right
        left = step.left if step.left is not None else total
        if i == reverse:
            left, right = right, left
        total = _apply(op, left, right)
        total = total + slip[1] if total is not None and slip[0] == i else total
        if total is None or total <= 0 and reverse is None:  # counts are positive whole numbers
            return None
        trace.append((left, right, op, total, "reverse" if i == reverse else slip[0] == i))
    return trace


def _make_problem(rng: random.Random) -> tuple[list[Step], dict]:
    name, he, him = rng.choice(PEOPLE)
    friend = rng.choice([p[0] for p in PEOPLE if p[0] != name])
    cpl, csg = rng.choice(CONTAINERS)
    words = {"name": name, "Name": name, "he": he, "He": he.capitalize(), "him": him,
             "Friend": friend, "obj": rng.choice(OBJECTS), "cpl": cpl, "csg": csg}
    start = rng.choice(("has", "has", "groups", "rate"))
    left_range, right_range, follow_counts = START_RANGES[start]
    left = rng.randint(*left_range) if left_range else None
    steps = [Step(start, left, rng.randint(*right_range))]
    n_follow, total = rng.choice(follow_counts), _evaluate(steps)[-1][3]
    for i in range(n_follow):
        kinds = ["buy", "receive", "give", "lose"]
        if i == n_follow - 1:  # sharing or selling only makes sense as the last step
            kinds += ["share", "sell"]
        kind = rng.choice(kinds)
        divisors = [d for d in range(2, 13) if total % d == 0 and d < total]
        if kind == "share" and not divisors or kind in ("give", "lose") and total < 4:
            kind = "buy"
        if kind == "share":
            number = rng.choice(divisors)
        elif kind in ("give", "lose"):  # must leave something
            number = rng.randint(2, min(30, total - 1))
        else:
            number = rng.randint(2, 9 if kind == "sell" else 30)
        steps.append(Step(kind, None, number))
        total = _evaluate(steps)[-1][3]
    return steps, words


def _question_text(steps: list[Step], words: dict) -> str:
    sentences = [QUESTION_TEXT[s.kind].format(L=s.left, R=s.right, **words) for s in steps]
    ending = {"share": "How many {obj} does each friend get?", "sell": "How many dollars does {name} earn?"}
    default = "How many {obj} does {name} have %s?" % ("in all" if len(steps) == 1 else "now")
    sentences.append(ending.get(steps[-1].kind, default).format(**words))
    return " ".join(sentences)


def _inject_error(rng: random.Random, steps: list[Step], kind: str, question_numbers: set):
    """Try to apply one error of `kind`; the trace, or None if it cannot change the answer."""
    true_result = _evaluate(steps)[-1][3]
    operators = [STEP_OPERATOR[s.kind] for s in steps]
    rights = [s.right for s in steps]
    arithmetic = [i for i, op in enumerate(operators) if op != "="]
    no_slip = (None, 0)
    if kind == "negative_result":  # "gives away 30" of 12 computed as 12 - 30 -> a negative count
        subtractions = [i for i, op in enumerate(operators) if op == "-"]
        rng.shuffle(subtractions)
        for i in subtractions:
            trace = _evaluate(steps, reverse=i)
            if trace is not None and trace[-1][3] < 0:
                return trace
        return None
    if kind == "crashed_code":  # the code fails; the solver guesses a nearby number anyway
        trace = list(_evaluate(steps))
        left, right, op, result, _ = trace[-1]
        guess = result + rng.choice((-4, -3, -2, -1, 1, 2, 3, 5, 10))
        return trace[:-1] + [(left, right, op, guess, "crash")] if guess > 0 else None
    if kind == "wrong_operation":
        candidates = [(operators[:i] + [wrong] + operators[i + 1:], None, no_slip)
                      for i in arithmetic for wrong in WRONG_OPERATORS[operators[i]]]
    elif kind == "arithmetic_slip":
        candidates = [(None, None, (i, delta)) for i in arithmetic for delta in (-3, -2, -1, 1, 2, 3, 10, -10)]
    else:  # wrong_number: a nearby number that the question does not contain
        candidates = [(None, rights[:i] + [rights[i] + d] + rights[i + 1:], no_slip)
                      for i in range(len(steps)) for d in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)
                      if rights[i] + d >= 2 and rights[i] + d not in question_numbers]
    rng.shuffle(candidates)
    for ops, nums, slip in candidates:
        trace = _evaluate(steps, ops, nums, slip)
        if trace is not None and trace[-1][3] != true_result:
            return trace
    return None


def _prose_solution(rng, steps, trace, words) -> str:
    lines = [rng.choice(("", "Let's work through it step by step.", "We follow the story."))]
    for step, (left, right, op, result, slipped) in zip(steps, trace):
        equation = f"{left} {LATEX_OPERATOR[op]} {right} = {result}" if op != "=" else ""
        # The wording restates the question's number even where the equation swapped it.
        stated = left if slipped == "reverse" else right
        lines.append(PROSE_TEXT[step.kind].format(L=left, R=stated, E=equation, **words))
    lines.append(rng.choice(("The answer is", "Therefore, the answer is", "So the answer is"))
                 + f" \\boxed{{{trace[-1][3]}}}.")
    return " ".join(line for line in lines if line)


def _code_solution(rng, steps, trace, words) -> str:
    crashed = trace[-1][4] == "crash"
    code, variable = [], ""
    for step, (left, right, op, result, slipped) in zip(steps, trace):
        assignments, variable, expression = CODE_TEXT[step.kind]
        fill = dict(words, L=left, R=right, op=PYTHON_OPERATOR.get(op, ""))
        code += [line.format(**fill) for line in assignments]
        # Solvers sometimes compute a step by hand and write the literal; a slip in code always
        # looks like that (the interpreter itself does not slip), but so do some correct steps.
        hand_computed = slipped is True or (op != "=" and rng.random() < HAND_COMPUTED_SHARE)
        if hand_computed:  # a crashed step's code is right; only the closing guess is wrong
            literal = _apply(op, left, right) if slipped == "crash" else result
            expression = f"{literal}  # {left} {PYTHON_OPERATOR[op]} {right}"
        code.append(f"{variable.format(**words)} = {expression.format(**fill)}")
    code.append(variable.format(**words))
    answer, output = trace[-1][3], trace[-1][3]
    if crashed:  # a typo in the last line's name: the interpreter stops, the solver guesses
        typo = variable.format(**words)[:-1] or "x"
        code[-1] = typo
        output = f"Traceback (most recent call last):\nNameError: name '{typo}' is not defined"
    closing = rng.choice((f"So the answer is \\boxed{{{answer}}}.",
                          f"Thus the answer is \\boxed{{{answer}}}."))
    return ("Let's solve this problem using Python code.\n<llm-code>\n" + "\n".join(code)
            + f"\n</llm-code>\n<llm-code-output>\n{output}\n</llm-code-output>\n{closing}")


def _draw_error(rng, steps, kinds, weights, question_numbers):
    """(kind, trace) of one wrong solution, or None if no kind can change this problem's answer."""
    drawn = rng.choices(kinds, weights)[0]
    # Fall back to other kinds if the drawn one cannot change this problem's answer.
    for kind in [drawn] + [k for k in kinds if k != drawn]:
        wrong_trace = _inject_error(rng, steps, kind, question_numbers)
        if wrong_trace is not None:
            return kind, wrong_trace
    return None


def _common_mistake(rng, steps, kinds, weights, question_numbers):
    """The mistake several wrong solutions of one question share, for COMMON_MISTAKE_SHARE of questions."""
    if rng.random() >= COMMON_MISTAKE_SHARE:
        return None
    return _draw_error(rng, steps, kinds, weights, question_numbers)


def generate_examples(n: int, seed: int = 0) -> Iterator[Example]:
    """Yield exactly n Examples: the row plus its true answer and error kind."""
    rng = random.Random(seed)
    kinds, weights = list(ERROR_KIND_SHARES), list(ERROR_KIND_SHARES.values())
    produced = question_id = 0
    while produced < n:
        steps, words = _make_problem(rng)
        question = _question_text(steps, words)
        true_answer = str(_evaluate(steps)[-1][3])
        question_numbers = {s.right for s in steps} | {s.left for s in steps if s.left is not None}
        common = _common_mistake(rng, steps, kinds, weights, question_numbers)
        for _ in range(min(rng.choice(ROWS_PER_QUESTION), n - produced)):
            error_kind, trace = None, _evaluate(steps)
            if rng.random() >= CORRECT_SHARE:
                if common is not None and rng.random() < COMMON_MISTAKE_REUSE:
                    error_kind, trace = common  # the same wrong answer as other solutions of this question
                else:
                    error_kind, trace = _draw_error(rng, steps, kinds, weights, question_numbers) or (None, trace)
            code_style = rng.random() < CODE_STYLE_SHARE
            code_style = {"crashed_code": True, "negative_result": False}.get(error_kind, code_style)
            render = _code_solution if code_style else _prose_solution
            answer = str(trace[-1][3])
            row = {"question": question, "answer": answer, "solution": render(rng, steps, trace, words),
                   "is_correct": answer == true_answer}
            yield Example(row, true_answer, error_kind, question_id)
            produced += 1
        question_id += 1


def generate_rows(n: int, seed: int = 0) -> Iterator[dict]:
    """Yield exactly n rows {question, answer, solution, is_correct}; deterministic in seed."""
    for example in generate_examples(n, seed):
        yield example.row


def write_rows(path: str | Path, n: int, seed: int = 0, *, test: bool = False) -> Path:
    """Write n rows as .csv, .jsonl or .parquet (by suffix), atomically.

    ``test=True`` writes the contest's test layout: a first column ``ID`` (0..n-1) and
    placeholder labels (``is_correct`` True everywhere).
    """
    path, suffix = Path(path), Path(path).suffix.lower()
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise ValueError(f"unsupported suffix {suffix!r}: use .csv, .jsonl or .parquet")
    columns = (("ID",) if test else ()) + CSV_COLUMNS
    records = [{c: (dict(row, ID=i, is_correct=True) if test else row)[c] for c in columns}
               for i, row in enumerate(generate_rows(n, seed))]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so readers never see a half-written file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if suffix == ".parquet":
            os.close(fd)
            import pyarrow as pa
            import pyarrow.parquet as pq
            types = {"ID": pa.int64(), "is_correct": pa.bool_()}  # explicit, so 0 rows work too
            schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
            pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp_name)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                if suffix == ".csv":
                    writer = csv.DictWriter(handle, fieldnames=columns)
                    writer.writeheader()
                    writer.writerows(records)
                else:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a data file should be readable
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):  # only left behind when writing failed
            os.unlink(tmp_name)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mathverify.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="output file: .csv, .jsonl or .parquet")
    parser.add_argument("--rows", type=int, default=1000, help="number of rows (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test", action="store_true", help="contest test layout: ID column, placeholder labels")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    print(write_rows(args.out, args.rows, args.seed, test=args.test))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
