"""What a solution's own text says against its answer: checks that need no model.

Two checks, each cheap (regular expressions and exact arithmetic on the numbers written down):

* **Arithmetic** (:func:`arithmetic`): every written equality whose sides are plain numbers and
  operators (``3 x 60 = 180``, ``$13 \\times 10 = 130$``, ``41 - (4 + 24) = 41 - 28 = 13``,
  ``\\frac{3}{4} \\cdot 400 = 300``) is evaluated; a side that touches a variable, a unit with an
  exponent, a function call or a sentence is skipped, never guessed. A step is wrong when its
  sides differ by more than the rounding its right side shows (half a unit of its last decimal)
  and by more than 1 % (``750 * 0.33 = 250`` is a rounding, ``430 + 750 + 300 + 700 = 1880`` is a slip).
* **Support** (:func:`answer_supported`): the final answer's value appears in the solution
  before its final statement (the last ``\\boxed{}`` and what follows it are not read). A
  guessed answer (a crashed program, a truncated derivation) is not supported.

On real generated solutions (``benchmarks/data``, eight models each; ``benchmarks/bench_checks.py``,
2026-12-03): a GSM8K solution with a wrong step was right 8 % of the time (2.6 % of rows; the
others 72 %), one whose answer the body never reached 22 % (10 %; the others 75 %); on MATH
Level 5, 22 % and 24 % against 43 % and 45 %. The gap holds within every answering model (it is
not a writer's style). :func:`flawed` is either: one bit per row, a feature of the row that the
evidence index also counts (``mathverify.evidence.index``). Cost: 0.2-0.4 ms per real solution.
"""

from __future__ import annotations

import ast
import operator
import os
import re
from collections import deque
from fractions import Fraction
from functools import lru_cache
from itertools import islice
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from mathverify.evidence.answers import answer_key, before_last_boxed, last_boxed
from mathverify.evidence.equality import is_plain_number

T = TypeVar("T")

# ----- text -> plain arithmetic -------------------------------------------------------------
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}")
_REPLACE = (("\\times", "*"), ("\\cdot", "*"), ("×", "*"), ("·", "*"), ("÷", "/"), ("\\div", "/"), ("−", "-"),
            ("\\$", " "), ("\\!", ""), ("\\,", ""), ("\\%", "%"), ("**", "^"), ("\\left", ""), ("\\right", ""))
_MATH_DELIMS = re.compile(r"\\[()\[\]]|\$")
_TIMES_X = re.compile(r"(?<=\d)\s*[xX]\s*(?=[\d(])")  # 3 x 60: multiplication, not a variable
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BRACED_NUMBERS = re.compile(r"\{([\d.+\-*/^ ()]+)\}")
# a stretch of numbers, operators and '=' (those holding an '=' are read): one greedy class, not
# "[...]*=[...]*", which retries from every position of a long run that holds no '=' (quadratic)
_RUN = re.compile(r"[\d.+\-*/^()= ]+")
_SIDE = re.compile(r"^[\d.+\-*/^() ]+$")
_BAD_SIDE = re.compile(r"\d\s+[\d(]|\)\s*\d|\.\D|\.$|\d\.\d+\.")  # "3 4", ")5", "1.2.3": not one expression
_HAS_OPERATOR = re.compile(r"[\d)]\s*[+\-*/^(]")
_LEADING_OPERATOR = re.compile(r"^(?:[+*/^]|-\s)")
_IMPLICIT_TIMES = re.compile(r"(?<=[\d)])\s*\(")
_OF = re.compile(r"\bof$")
_DECIMALS = re.compile(r"-?\d+\.(\d+)")

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_MAX_POWER = 64


def _plain(text: str) -> str:
    """LaTeX and typography to plain arithmetic: ``\\frac{a}{b}`` -> ``((a)/(b))``, ``\\times`` -> ``*``."""
    for _ in range(3 if "frac" in text else 0):  # nested fractions
        text = _FRAC.sub(r"((\1)/(\2))", text)
    for old, new in _REPLACE:
        text = text.replace(old, new)
    text = _MATH_DELIMS.sub(" ", text)
    text = _TIMES_X.sub("*", text)
    text = _THOUSANDS.sub("", text)
    return _BRACED_NUMBERS.sub(r"(\1)", text)


def _evaluate(node) -> Fraction:
    """Exact value of a parsed expression of numbers, + - * / and small integer powers."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.Constant) and type(node.value) is float:
        return Fraction(repr(node.value))  # the decimal as written, not its binary approximation
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, power = _evaluate(node.left), _evaluate(node.right)
        if power.denominator != 1 or abs(power) > _MAX_POWER or abs(base) > 10 ** 6:
            raise ValueError("not a small integer power")
        return base ** int(power)
    raise ValueError("not plain arithmetic")


@lru_cache(maxsize=1 << 16)
def _value(side: str) -> Fraction | None:
    """The exact value of one side of an equality, or None when it is not plain arithmetic."""
    side = side.strip()
    if not side or not _SIDE.match(side) or _BAD_SIDE.search(side) or not any(c.isdigit() for c in side):
        return None
    side = _IMPLICIT_TIMES.sub("*(", side).replace("^", "**")
    try:
        return _evaluate(ast.parse(side, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, TypeError):
        return None


def _sides(text: str, match: re.Match) -> list[str]:
    """The sides of one run of equalities; a side continuing a formula (a variable, a function
    call, a bullet, ``20% of``) is replaced by ``"?"`` so that it is skipped."""
    run = match.group(0)
    start = match.start() + len(run) - len(run.lstrip())
    run = run.strip()
    end = start + len(run)
    before = text[max(0, start - 8):start].rstrip(" ")  # a few characters: the word or sign before the run
    if run.startswith("- ") and (not before or before[-1] in "\n:"):
        run = run[1:].lstrip()  # a list bullet, not a minus sign
    sides = run.rstrip(".").split("=")
    touching_before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if (touching_before.isalnum() or touching_before in "_\\}" or _LEADING_OPERATOR.match(sides[0].strip())
            or _OF.search(before) or (before and before[-1] in "|%")):
        sides[0] = "?"
    if after.isalnum() or after in "{\\_^(":
        sides[-1] = "?"
    return sides


def arithmetic(text: str) -> tuple[int, int]:
    """(equalities checked, equalities wrong) among the plain-number equalities of ``text``."""
    return _arithmetic(_plain(text)) if "=" in text else (0, 0)


def _arithmetic(plain: str) -> tuple[int, int]:
    checked = wrong = 0
    for match in _RUN.finditer(plain):
        if "=" not in match.group(0):
            continue
        sides = _sides(plain, match)
        values = [_value(s) if s != "?" else None for s in sides]
        for i in range(len(sides) - 1):
            left, right = values[i], values[i + 1]
            if left is None or right is None or not _HAS_OPERATOR.search(sides[i] + " " + sides[i + 1]):
                continue  # "x = 5", "12 = 12": nothing computed
            checked += 1
            shown = _DECIMALS.fullmatch(sides[i + 1].strip())
            rounding = Fraction(1, 2 * 10 ** len(shown.group(1))) if shown else Fraction(1, 2)
            if abs(left - right) > max(rounding, abs(right) / 100):
                wrong += 1
    return checked, wrong


# ----- the answer against the body ----------------------------------------------------------
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?(?![\w])")
_PLAIN_FRACTION = re.compile(r"\((-?\d+)\)/\((\d+)\)")  # \frac{1}{2} after _plain: (1)/(2)
_NORMALISE = re.compile(r"\s+|\\left|\\right|\\!|\\,|\\;|\$|\\displaystyle")


def _mentions(plain: str, target: Fraction) -> bool:
    """Whether a number written in ``plain`` (a decimal or ``p/q``) equals ``target`` exactly."""
    near = float(target)
    for token in _NUMBER.findall(_PLAIN_FRACTION.sub(r"\1/\2", plain) if "/(" in plain else plain):
        top, _, bottom = token.partition("/")
        value = float(top) / float(bottom) if bottom and float(bottom) else float(top)
        if abs(value - near) <= 1e-9 * max(1.0, abs(near)) and Fraction(top) / Fraction(bottom or 1) == target:
            return True
    return False


def answer_supported(solution: str, answer: str) -> bool:
    """Whether the answer's value appears in the solution before its final statement.

    A number answer (``answers.answer_key`` is a plain number) is looked for among the body's
    numbers (``$1,000`` = ``1000`` = ``1000.0``, ``\\frac{1}{2}`` = ``1/2``); any other answer as text, its
    spaces and ``\\left``/``\\right`` ignored, its ``\\dfrac`` spelled ``\\frac``. An empty answer
    counts as supported (it has a feature of its own).
    """
    body = before_last_boxed(solution)
    return _supported(body, _plain(body), answer)


def _supported(body: str, plain: str, answer: str) -> bool:
    key = answer_key(answer)
    if not key:
        return True
    if is_plain_number(key):  # keys of numbers are exact: "12", "-3/4"
        return _mentions(plain, Fraction(key))
    inner = last_boxed(answer)
    text = _NORMALISE.sub("", (inner if inner is not None else answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))
    return bool(text) and text in _NORMALISE.sub("", body.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))


def flawed(solution: str, answer: str) -> bool:
    """A wrong arithmetic step, or an answer the body never reached: the bit the evidence index counts."""
    body = before_last_boxed(solution)
    plain = _plain(body)
    return ("=" in body and _arithmetic(plain)[1] > 0) or not _supported(body, plain, answer)


# ----- a stream of rows: in worker processes once it is long ----------------------------------
CHUNK_ROWS = 4096  # rows per task; a stream shorter than one chunk never starts a worker


def _flawed_chunk(pairs: list[tuple[str, str]]) -> list[bool]:
    return [flawed(solution, answer) for solution, answer in pairs]


def flawed_in_order(items: Iterable[T], pair: Callable[[T], tuple[str, str]],
                    workers: Optional[int] = None) -> Iterator[tuple[T, bool]]:
    """``(item, flawed(*pair(item)))`` for every item of a stream, in the stream's order.

    The first chunk is checked in this process; the rest of a longer stream goes to ``workers``
    processes (default: every CPU), a few chunks in flight at a time, so memory stays bounded
    whatever the length (a million contest rows take minutes in one process).
    """
    stream = iter(items)
    first = list(islice(stream, CHUNK_ROWS))
    yield from ((item, flawed(*pair(item))) for item in first)
    workers = workers or os.cpu_count() or 1
    if len(first) < CHUNK_ROWS or workers == 1:
        yield from ((item, flawed(*pair(item))) for item in stream)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pending: deque = deque()
    # spawn: a forked copy of a process that already runs torch's thread pools can deadlock
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while True:
            chunk = list(islice(stream, CHUNK_ROWS))
            if chunk:
                pending.append((chunk, pool.submit(_flawed_chunk, [pair(item) for item in chunk])))
            if pending and (not chunk or len(pending) > 2 * workers):
                done, future = pending.popleft()
                yield from zip(done, future.result())
            if not chunk and not pending:
                return
