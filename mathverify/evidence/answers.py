"""Answer keys: one canonical string per final answer, so that equal answers meet.

``answer_key("$1,000")``, ``answer_key("1000.0")`` and ``answer_key("\\boxed{1000}")`` are all
``"1000"``; ``"\\frac{1}{2}"``, ``"\\dfrac12"``, ``"1/2"`` and ``"0.5"`` are all ``"1/2"``.
Numbers become exact fractions (``fractions.Fraction``: no float rounding, ``0.333 != 1/3``);
anything else becomes a normalised LaTeX string (no spaces, ``\\left``/``\\right``, ``\\text{}``
or ``\\dfrac`` spelling, unit words or ``^\\circ``); Unicode maths becomes LaTeX (``6√2`` =
``6\\sqrt{2}``, ``25π`` = ``25\\pi``, ``x²`` = ``x^2``, ``1112112₃`` = ``1112112_3``). Cheap symbolic
equality only: ``2\\sqrt{3}`` and ``\\sqrt{12}`` stay apart.

Why not Hugging Face's ``math-verify``: it answers "are these two equal?" (parse both with sympy,
then compare) but gives no hashable key, so counting how many solutions of a question agree
would need every pair; and its sympy parse costs milliseconds per string, where a key here costs
microseconds (``answer_key`` is cached by string: a million contest answers hold far fewer
distinct strings).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DELIMS = re.compile(r"\\left|\\right|\\big|\\Big|\\bigl|\\bigr|\\displaystyle")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF_SHORT = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")  # \frac{1}2
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[a-z])")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_LEAD = re.compile(r"^(?:the\s+)?(?:final\s+)?(?:answer\s*(?:is)?\s*[:=]?\s*)", re.IGNORECASE)
_VAR_EQ = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(?=[^=])")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d])")
# Unit words after a number: two letters or more ("5 cm", "18 dollars"); one letter is a variable ("5x").
# a word is taken whole ((?![a-zA-Z])): else a long run of letters could be cut into words in
# cubically many ways before the match fails (seconds for an 800-letter answer)
_UNIT_TAIL = re.compile(r"(?<=[\d}])\s*(?:[a-zA-Z]{2,}(?![a-zA-Z])\.?\s*){1,3}$")
_SPACE_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?: \d{3})+)(?![\d])")  # 9 500 (a thin-space style)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")  # not \d+\.?\d*: quadratic on a failed match
_FRAC = re.compile(r"([+-]?)\\frac\{([^{}]+)\}\{([^{}]+)\}")
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?$")
# Unicode maths as the LaTeX (or ASCII) people type for it; a trailing space keeps "π r" from
# becoming the command "\\pir" (spaces after commands are settled below)
_UNICODE = str.maketrans({"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "π": "\\pi ", "∞": "\\infty ",
                          "±": "\\pm ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∈": "\\in ", "∪": "\\cup ",
                          "½": "\\frac{1}{2}", "¼": "\\frac{1}{4}", "¾": "\\frac{3}{4}"})
_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"
_SUBSCRIPT = "₀₁₂₃₄₅₆₇₈₉"
_SCRIPT_RUN = re.compile(f"[{_SUPERSCRIPT}]+|[{_SUBSCRIPT}]+")
_SCRIPT_DIGITS = str.maketrans(_SUPERSCRIPT + _SUBSCRIPT, "0123456789-" + "0123456789")
_ROOT_ARGUMENT = re.compile(r"\d+(?:\.\d+)?|[a-zA-Z]|\\[a-zA-Z]+")  # √2, √2.5, √x, √\pi
# Words that are units or filler after a number ("18 dollars", "5 cm", "3 hours").
_KEEP_WORDS = {"i", "e", "pi", "inf", "infty", "infinity", "sqrt", "frac", "cdot", "times"}


def before_last_boxed(text: str) -> str:
    """The text before its last ``\\boxed{`` (all of it when there is none): a solution without its
    final statement."""
    starts = [m.start() for m in _BOXED.finditer(text)]
    return text[: starts[-1]] if starts else text


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


@lru_cache(maxsize=1 << 18)
def answer_key(text: object) -> str:
    """Canonical key of one answer; ``""`` for an empty one. Equal keys mean equal answers."""
    s = "" if text is None else str(text)
    boxed = last_boxed(s)
    s = boxed if boxed is not None else s
    s = s.strip().strip(".").strip()
    if not s.isascii():
        s = _unicode_as_latex(s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    for _ in range(3):  # nested \text{\textbf{...}}
        s = _TEXT_WRAP.sub(r"\1", s)
    s = _DELIMS.sub("", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cdot", "*").replace("\\times", "*")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _LEAD.sub("", s.strip())
    s = _VAR_EQ.sub("", s)
    s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
    s = _SPACE_THOUSANDS.sub(lambda m: m.group(1).replace(" ", ""), s)
    s = s.strip().rstrip(".").strip()
    tail = _UNIT_TAIL.search(s)
    if tail and not (set(re.findall(r"[a-zA-Z]+", tail.group(0).lower())) & _KEEP_WORDS):
        s = s[: tail.start()]
    s = s.replace("{,}", "").strip()
    number = _as_number(s)
    if number is not None:
        return _fraction_key(number)
    choice = _CHOICE.match(s)
    if choice:
        return choice.group(1).lower()
    # Spaces go, except between two digits ("1 2" is not 12) and after a command before a letter
    # ("\pi r" is not "\pir"): those become one space.
    s = re.sub(r"(?<=\d)\s+(?=\d)", "\x00", s)
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", "\\1\x00", s)
    s = re.sub(r"\s+", "", s).replace("\x00", " ")
    s = re.sub(r"(?<=\d)\.0+(?!\d)", "", s)  # 3.0 inside an expression: (3.0, 4) -> (3,4)
    return s


def _unicode_as_latex(s: str) -> str:
    """``6√2`` -> ``6\\sqrt{2}``, ``√(x+1)`` -> ``\\sqrt{x+1}``, ``25π`` -> ``25\\pi``, ``x²`` -> ``x^2``,
    ``x¹⁰`` -> ``x^{10}``, ``1112112₃`` -> ``1112112_3``. Linear time: brackets are matched in one pass."""
    s = _SCRIPT_RUN.sub(_script_as_latex, s).translate(_UNICODE)
    if "√" not in s:
        return s
    closing, stack = {}, []  # position of "(" or "{" -> position of its partner
    for i, ch in enumerate(s):
        if ch in "({":
            stack.append(i)
        elif ch in ")}" and stack and s[stack[-1]] == ("(" if ch == ")" else "{"):
            closing[stack.pop()] = i
    out, braces, i = [], set(), 0  # braces: closing brackets of a root's argument, written as "}"
    while i < len(s):
        if i in braces:
            out.append("}")
            i += 1
        elif s[i] != "√":
            out.append(s[i])
            i += 1
        else:
            j = i + 1
            while j < len(s) and s[j] == " ":
                j += 1
            argument = _ROOT_ARGUMENT.match(s, j)
            if j in closing:  # √(x+1), √{x}: the bracket's content, itself read on as the loop goes
                out.append("\\sqrt{")
                braces.add(closing[j])
                i = j + 1
            elif argument:
                out.append("\\sqrt{" + argument.group(0) + "}")
                i = argument.end()
            else:
                out.append("\\sqrt")
                i = j
    return "".join(out)


def _script_as_latex(run: re.Match) -> str:
    digits = run.group(0).translate(_SCRIPT_DIGITS)
    mark = "^" if run.group(0)[0] in _SUPERSCRIPT else "_"
    return f"{mark}{digits}" if len(digits) == 1 else f"{mark}{{{digits}}}"


def _as_number(s: str) -> Fraction | None:
    """An exact number from ``12``, ``-0.5``, ``1/2``, ``\\frac{1}{2}``, ``-\\frac{3}{4}``, ``2\\frac{1}{2}``."""
    s = re.sub(r"^([+-])\s+", r"\1", s.strip())  # "- 5"
    s = re.sub(r"\s*/\s*", "/", s)  # "1 / 2"
    if not s or " " in s:  # "1 2" is two numbers, not 12
        return None
    try:
        if _NUMBER.fullmatch(s):
            return Fraction(s)
        if re.fullmatch(r"[+-]?\d+/\d+", s):
            return Fraction(s)
        frac = _FRAC.fullmatch(s)
        if frac:
            top, bottom = _as_number(frac.group(2)), _as_number(frac.group(3))
            if top is None or bottom is None:
                return None
            value = top / bottom
            return -value if frac.group(1) == "-" else value
        mixed = re.fullmatch(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # 2\frac{1}{2}: a mixed number
        if mixed:
            value = int(mixed.group(2)) + Fraction(int(mixed.group(3)), int(mixed.group(4)))
            return -value if mixed.group(1) == "-" else value
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return None


def _fraction_key(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
