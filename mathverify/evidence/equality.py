"""Answer equality within a question: which of its distinct answer keys are one answer.

Two stages. ``answers.answer_key`` gives every answer an exact canonical key in microseconds
(numbers become exact fractions: ``$1,000`` = ``1000.0``, ``\\frac12`` = ``0.5``); most rows stop
there. Then, per question and only among its distinct keys, Hugging Face's ``math-verify``
(sympy) decides the symbolic cases: ``3\\sqrt{2}`` = ``\\sqrt{18}``, ``\\{2,3\\}`` = ``\\{3,2\\}``,
``2^{10}`` = ``1024``, ``\\frac{\\sqrt2}{2}`` = ``\\frac{1}{\\sqrt2}``, while ``5x`` != ``5`` and
``2x`` != ``2y``. The cost is O(rows) for the keys plus, per question, one parse per distinct key
(~2-4 ms, cached by string) and a ``verify`` per pair of distinct keys with a symbolic side:
questions whose answers are all plain numbers (GSM8K-style) cost nothing here. Two plain numbers
are equal only when their keys are (no float tolerance: ``0.333`` != ``1/3``). Prose answers
("Jamaar can buy 3 plums") are left to their exact key: math-verify would pull a number out of the
sentence, and whether such an answer counts as right is the labeller's call, not ours.

The result is an alias map ``{key: representative}`` (only keys that meet another; the
representative is the class's most voted key): ``mathverify.evidence.index`` counts a class's votes and
labels together. ``question_classes`` runs in worker processes for many questions (math-verify's
timeouts use ``signal.alarm``, which only the main thread of a process may set).
"""

from __future__ import annotations

import os
import re
import threading
from functools import lru_cache
from typing import Iterable, Mapping, Optional

_PLAIN_NUMBER = re.compile(r"-?\d+(?:/\d+)?")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_MATH_WORDS = re.compile(r"sqrt|arcsin|arccos|arctan|sin|cos|tan|cot|sec|csc|log|ln|exp|infty|inf|pi|oo|mod|gcd|lcm")
_PROSE = re.compile(r"[a-zA-Z]{3,}")
PARALLEL_MIN_QUESTIONS = 400  # fewer symbolic questions than this: one process is quicker than starting workers


def is_plain_number(key: str) -> bool:
    """A key ``answer_key`` made from a number (an integer or an exact fraction ``p/q``)."""
    return _PLAIN_NUMBER.fullmatch(key) is not None


def is_symbolic(key: str) -> bool:
    """A key for math-verify: not empty, not a plain number, not prose (a run of 3+ letters left
    once LaTeX commands and function names are taken out)."""
    if not key or is_plain_number(key):
        return False
    return _PROSE.search(_MATH_WORDS.sub("", _COMMAND.sub("", key))) is None


def _timeout() -> Optional[int]:
    # math-verify's timeout sets signal.alarm: only the main thread may; elsewhere run without one
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=1 << 16)
def _parsed(key: str):
    from math_verify import parse

    try:
        return tuple(parse(f"${key}$", parsing_timeout=_timeout()))
    except Exception:  # noqa: BLE001 - a parse that fails (or times out) only means "no symbolic match"
        return ()


def symbolically_equal(a: str, b: str) -> bool:
    """math-verify's equality of two keys (either direction; False when either does not parse)."""
    from math_verify import verify

    pa, pb = _parsed(a), _parsed(b)
    if not pa or not pb:
        return False
    try:
        timeout = _timeout()
        return bool(verify(list(pa), list(pb), timeout_seconds=timeout) or verify(list(pb), list(pa), timeout_seconds=timeout))
    except Exception:  # noqa: BLE001
        return False


def needs_symbolic(keys: Iterable[str]) -> bool:
    """Whether a question's distinct keys hold a pair math-verify could merge."""
    keys = list(keys)
    return len(keys) > 1 and any(is_symbolic(k) for k in keys)


def question_classes(votes: Mapping[str, int]) -> dict[str, str]:
    """{key: representative} for the keys of one question that meet another (by ``symbolically_equal``).

    ``votes``: the question's distinct keys with their vote counts. The representative of a class
    is its most voted key (ties: the shorter, then the smaller string), so the result depends only
    on the question's answers, never on their order. Plain numbers only meet symbolic keys.
    """
    keys = sorted(votes)
    if not needs_symbolic(keys):
        return {}
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    symbolic = [k for k in keys if is_symbolic(k)]
    numbers = [k for k in keys if is_plain_number(k)]
    for i, a in enumerate(symbolic):
        for b in symbolic[i + 1:] + numbers:
            if root(a) != root(b) and symbolically_equal(a, b):
                parent[root(a)] = root(b)
    classes: dict[str, list[str]] = {}
    for k in keys:
        classes.setdefault(root(k), []).append(k)
    aliases = {}
    for members in classes.values():
        if len(members) > 1:
            rep = min(members, key=lambda k: (-votes[k], len(k), k))
            aliases.update({k: rep for k in members if k != rep})
    return aliases


def _chunk_classes(chunk: list[tuple[str, dict[str, int]]]) -> dict[str, dict[str, str]]:
    out = {}
    for digest, votes in chunk:
        aliases = question_classes(votes)
        if aliases:
            out[digest] = aliases
    return out


def all_classes(questions: Mapping[str, Mapping[str, int]], workers: Optional[int] = None) -> dict[str, dict[str, str]]:
    """``question_classes`` of many questions ({digest: {key: votes}}): {digest: aliases}, only
    questions with aliases. Spread over ``workers`` processes (default: every CPU) when there are
    many symbolic questions."""
    todo = [(d, dict(v)) for d, v in questions.items() if needs_symbolic(v)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(todo) < PARALLEL_MIN_QUESTIONS:
        return _chunk_classes(todo)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, len(todo) // (workers * 8))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    out: dict[str, dict[str, str]] = {}
    # spawn: a forked copy of a process that already runs torch's thread pools can deadlock
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(_chunk_classes, chunks):
            out.update(part)
    return out
