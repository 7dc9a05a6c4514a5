"""The shell commands of README.md and docs/*.md: fenced shell blocks, continued lines joined,
split into simple commands, wrappers removed (used by tests/test_doc_commands.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
SEPARATORS = {"&&", "||", ";", "|", "&"}
WRAPPERS = {"srun", "nohup", "time", "exec"}  # run the command that follows


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command line) of every fenced shell block, continuations joined."""
    out: list[tuple[int, str]] = []
    lang = None  # None: outside a fence; "": a fence that is not a shell block
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if lang is None:
                word = stripped[3:].strip().split()
                lang = word[0].lower() if word and word[0].lower() in SHELL_LANGS else ""
            else:
                lang = None
            continue
        if not lang:
            continue
        if lang == "console":
            if not pending and not stripped.startswith("$ "):
                continue  # output
            if not pending:
                stripped = stripped[2:]
        if not pending:
            if not stripped or stripped.startswith("#"):  # comments, #SBATCH lines, the shebang
                continue
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((start, pending + stripped))
        pending = ""
    return out


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one line: shell words, split on && || ; | and &, comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def unwrap(words: list[str]) -> list[str]:
    """The command itself: leading VAR=value assignments and launcher wrappers removed."""
    words = list(words)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if words and words[0] in WRAPPERS:
        words.pop(0)
        while words and words[0].startswith("-"):
            words.pop(0)
        return unwrap(words)
    if words and words[0] == "torchrun":  # torchrun [options] -m MODULE args | SCRIPT args
        if "-m" in words:
            at = words.index("-m")
            return ["python", *words[at:]]
        rest = [w for w in words[1:] if not w.startswith("-") and w.endswith(".py")]
        return ["python", *words[words.index(rest[0]):]] if rest else words
    return words


def doc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        name = path.relative_to(ROOT).as_posix()
        for number, line in shell_lines(path.read_text(encoding="utf-8")):
            for k, words in enumerate(split_commands(line), 1):
                found.append((f"{name}:{number}" + (f"#{k}" if k > 1 else ""), words))
    return found
