"""Every shell command in README.md and docs/*.md parses, without running anything heavy.

The commands (``tests/doc_shell.py``) are the lines of fenced ``bash`` / ``sh`` / ``shell`` / ``console`` blocks (a ``console``
block's commands are its ``$ `` lines), with backslash-continued lines joined, split on ``&&``,
``||``, ``;`` and ``|``, comments (``#SBATCH`` and shebang lines included) dropped, leading
``VAR=value`` assignments stripped and the ``srun`` / ``nohup`` / ``torchrun ... -m`` wrappers
removed. Then, by program:

- ``mathverify fit|validate|test|predict ...``: parsed by the real LightningCLI parser of
  ``mathverify.cli`` (config files included: their keys and types are checked), stopped before
  ``--ckpt_path`` short forms are resolved or any class is instantiated;
- ``mathverify score|export|check-data|sweep ...``: parsed by the subcommand's own argparse parser
  (its ``main`` is stopped right after ``parse_args``);
- for both, flags must be spelled out: the parsers would also take an unambiguous prefix;
- ``python benchmarks/X.py ...``: the script exists and every ``--flag`` given to it appears in its
  ``--help`` (one subprocess per script); ``python -m pytest PATHS``: the paths exist;
- ``bash benchmarks/X.sh --flag``: the script exists and names the flag;
- ``pip install -e ".[extra]"``: the extras exist in pyproject.toml;
- a few programs are only checked for the repository files they name (``ALLOWED``, with reasons);
  any other program fails, so a new kind of command has to be taught here.

Every token that is a repository path (``configs/...``, ``benchmarks/...``, ...) must exist, except
files that an earlier documented command writes (``GENERATED``, parsed with a stand-in).
Test ids are ``FILE:LINE`` (``#2`` for the second command on a line). The relative links between
the pages are checked in ``tests/test_doc_links.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import importlib
import io
import os
import re
import subprocess
import sys
from unittest import mock

import pytest
from doc_shell import DOCS, ROOT, doc_commands, shell_lines, split_commands, unwrap  # tests/doc_shell.py

REPO_PREFIXES = ("configs/", "benchmarks/", "callbacks/", "mathverify/", "tests/", "docs/")
LIGHTNING_SUBCOMMANDS = {"fit", "validate", "test", "predict"}

# Files a documented command writes and a later one reads: parsed with a stand-in of the same kind.
GENERATED = {
    "sweeps/demo-sweep/results/best.yaml": "configs/demo.yaml",  # `mathverify sweep --sweep configs/sweep-demo.yaml`
}

# Programs checked only for the repository files they name, and why no more.
ALLOWED = {
    ".": "activates the virtual environment an earlier command created",
    "source": "activates the virtual environment an earlier command created",
    "cd": "changes folder",
    "git": "version control, outside this project",
    "hf": "the Hugging Face hub CLI: needs the network",
    "tensorboard": "a viewer; its --logdir is a run folder written by fit or sweep",
    "sbatch": "submits a job script that the docs write out (train.sh)",
    "export": "sets a variable",
}


class _Stop(Exception):
    """Raised right after argument parsing, so that nothing runs."""


# ----- checks -------------------------------------------------------------------------------------
@contextlib.contextmanager
def in_root():
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def repo_paths(words: list[str]) -> list[str]:
    paths = []
    for word in words:
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        for part in value.split(","):
            if part.startswith(REPO_PREFIXES) and part not in GENERATED:
                paths.append(part.split("::")[0])
    return paths


def check_repo_paths(words: list[str]) -> None:
    missing = [p for p in repo_paths(words) if not (glob.glob(str(ROOT / p)) if "*" in p else (ROOT / p).exists())]
    assert not missing, f"missing repository file(s): {', '.join(missing)}"


@functools.lru_cache(maxsize=None)
def lightning_parser():
    """The LightningCLI parser of ``mathverify``, built by the real entry point and stopped before parsing."""
    from mathverify import cli

    class ParserOnly(cli.MathVerifyCLI):
        def parse_arguments(self, parser, args):
            raise _Stop(parser)

    with mock.patch.object(cli, "MathVerifyCLI", ParserOnly):
        try:
            cli.cli_main(["fit"])
        except _Stop as stop:
            parser = stop.args[0]
        else:
            raise AssertionError("mathverify.cli never reached argument parsing")
    # The real CLI takes an unambiguous prefix (--model.lora_alph); the docs spell every flag out.
    parsers = [parser] + [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                          for sub in action.choices.values()]
    for each in parsers:
        each.allow_abbrev = False
    return parser


def parse_quietly(parse, argv: list[str]) -> None:
    out = io.StringIO()
    try:
        with in_root(), contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            parse(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # --help exits 0
            lines = [line for line in out.getvalue().splitlines() if line.strip()]
            raise AssertionError(f"does not parse: {' '.join(lines[-2:]) or exit_.code}") from None


def check_lightning(argv: list[str]) -> None:
    argv = [GENERATED.get(a, a) for a in argv]
    parse_quietly(lightning_parser().parse_args, argv)


def check_argparse_command(sub: str, argv: list[str]) -> None:
    from mathverify import cli

    module = importlib.import_module(cli.COMMANDS[sub])
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        parsed = original(self, args, namespace)
        # argparse takes an unambiguous prefix (--keep-abov for --keep-above): the docs spell flags out
        inexact = [f for f in given_flags(list(args or [])) if f not in self._option_string_actions]
        assert not inexact, f"mathverify {sub}: not an option as written (abbreviated?): {', '.join(inexact)}"
        raise _Stop(parsed)

    def run(args):
        with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
            try:
                module.main(list(args))
            except _Stop:
                return
        raise AssertionError(f"mathverify {sub}: main() returned without parsing its arguments")

    parse_quietly(run, argv)


def check_mathverify(argv: list[str]) -> None:
    from mathverify import cli

    assert argv, "mathverify without a subcommand"
    if argv[0] in LIGHTNING_SUBCOMMANDS or argv[0] in ("-h", "--help"):
        check_lightning(argv)
    elif argv[0] in cli.COMMANDS:
        check_argparse_command(argv[0], argv[1:])
    else:
        raise AssertionError(f"unknown mathverify subcommand {argv[0]!r}")


@functools.lru_cache(maxsize=None)
def script_help(script: str) -> str:
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{script} --help failed: {done.stderr.strip()[-300:]}"
    return done.stdout


def given_flags(args: list[str]) -> list[str]:
    """The --flags of a command line, up to a bare ``--`` (what follows goes to another program)."""
    flags = []
    for arg in args:
        if arg == "--":
            break
        if re.match(r"^--?[A-Za-z]", arg):
            flags.append(arg.split("=", 1)[0])
    return flags


def names_flag(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def check_python(args: list[str]) -> None:
    if args[:2] == ["-m", "venv"]:
        return
    if args[:2] == ["-m", "mathverify"]:
        return check_mathverify(args[2:])
    if args[:2] == ["-m", "pytest"]:
        targets = [a.split("::")[0] for a in args[2:] if not a.startswith("-")]
        missing = [t for t in targets if not (ROOT / t).exists()]
        assert not missing, f"pytest target(s) missing: {', '.join(missing)}"
        return
    assert args and not args[0].startswith("-"), f"python {' '.join(args[:2])}: not a documented kind of command"
    script = args[0]
    assert (ROOT / script).is_file(), f"script {script} does not exist"
    flags = given_flags(args[1:])
    if flags:
        text = script_help(script)
        unknown = [f for f in flags if not names_flag(text, f)]
        assert not unknown, f"{script} --help does not name {', '.join(unknown)}"


def check_shell_script(args: list[str]) -> None:
    assert args and (ROOT / args[0]).is_file(), f"shell script {args[0] if args else '?'} does not exist"
    text = (ROOT / args[0]).read_text(encoding="utf-8")
    unknown = [f for f in given_flags(args[1:]) if not names_flag(text, f)]
    assert not unknown, f"{args[0]} does not mention {', '.join(unknown)}"


def pyproject_extras() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # the keys of [project.optional-dependencies], read by hand
        section = text.split("[project.optional-dependencies]", 1)[-1].split("\n[", 1)[0]
        return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*=", section, flags=re.M))
    return set(tomllib.loads(text)["project"].get("optional-dependencies", {}))


def check_pip(args: list[str]) -> None:
    extras = pyproject_extras()
    for k, arg in enumerate(args):
        if k and args[k - 1] in ("-e", "--editable"):
            match = re.fullmatch(r"([^\[]+)(?:\[([^\]]*)\])?", arg)
            assert match and (ROOT / match.group(1)).exists(), f"pip -e {arg}: no such folder"
            wanted = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
            unknown = [e for e in wanted if e not in extras]
            assert not unknown, f"pip -e {arg}: no extra {', '.join(unknown)} in pyproject.toml"


def check_command(words: list[str]) -> None:
    """Raise AssertionError when a documented command would not parse (see the module docstring)."""
    words = unwrap(words)
    if not words:
        return  # a bare assignment
    check_repo_paths(words)
    program, args = words[0], words[1:]
    if program == "mathverify":
        check_mathverify(args)
    elif program in ("python", "python3"):
        check_python(args)
    elif program in ("bash", "sh"):
        check_shell_script(args)
    elif program == "pip":
        check_pip(args)
    elif program in ALLOWED:
        return
    else:
        raise AssertionError(f"unknown program {program!r}: teach tests/test_doc_commands.py how to check it")


# ----- tests --------------------------------------------------------------------------------------
COMMANDS = doc_commands()


@pytest.mark.parametrize("words", [w for _, w in COMMANDS], ids=[i for i, _ in COMMANDS])
def test_documented_command_parses(words):
    check_command(words)


def test_the_docs_have_commands():
    ids = [i for i, _ in COMMANDS]
    assert sum(i.startswith("README.md:") for i in ids) >= 5
    assert any(w[:2] == ["mathverify", "fit"] for _, w in COMMANDS)
    readme = [w for i, w in COMMANDS if i.startswith("README.md:")]
    assert ["python", "-m", "pytest", "-q", "tests"] in readme  # the test command .ci/run runs
    assert all(path.name == "README.md" or path.parent.name == "docs" for path in DOCS)


def test_extraction():
    text = "\n".join([
        "```bash",
        "# a comment",
        "#SBATCH --nodes=2",
        "A=1 CUDA_VISIBLE_DEVICES=$i mathverify fit --config configs/demo.yaml \\",
        "    --model.lora_r 8   # trailing comment",
        "python3 -m venv .venv && . .venv/bin/activate; echo 'a && b'",
        "```",
        "```",
        "mathverify output, not a command",
        "```",
        "```console",
        "$ mathverify score --help",
        "printed text",
        "```",
    ])
    lines = shell_lines(text)
    assert [n for n, _ in lines] == [4, 6, 12]
    commands = [unwrap(c) for _, line in lines for c in split_commands(line)]
    assert commands == [
        ["mathverify", "fit", "--config", "configs/demo.yaml", "--model.lora_r", "8"],
        ["python3", "-m", "venv", ".venv"],
        [".", ".venv/bin/activate"],
        ["echo", "a && b"],
        ["mathverify", "score", "--help"],
    ]
    assert unwrap(["srun", "--exclusive", "mathverify", "fit"]) == ["mathverify", "fit"]
    assert unwrap(["torchrun", "--nnodes", "2", "-m", "mathverify", "fit"]) == ["python", "-m", "mathverify", "fit"]


@pytest.mark.parametrize("command", [
    "mathverify fit --config configs/demo.yaml --model.lora_rr 8",  # misspelled flag
    "mathverify fit --config configs/no-such-config.yaml",  # config file missing
    "mathverify predict --ckpt_path demo:best --data.predict_fils x.csv",
    "mathverify frobnicate",
    "mathverify fit --config configs/demo.yaml --model.lora_alph 64",  # abbreviated
    "mathverify score --model demo:best --input x.csv --output y.parquet --keep-abov 0.9",  # abbreviated
    "mathverify score --model demo:best --input x.csv --output y.parquet --keep-abvoe 0.9",
    "mathverify check-data x.csv --max-lenght 512",
    "mathverify export --ckpt_path demo:best",  # --output is required
    "mathverify sweep --sweep configs/sweep-demo.yaml --stoarge sqlite://",
    "python benchmarks/bench_real.py --no-such-flag",
    "python benchmarks/no_such_script.py",
    "bash benchmarks/run.sh --no-such-flag",
    'pip install -e ".[no-such-extra]"',
    "python -m pytest -q tests/no_such_test.py",
    "frobnicate --now",
], ids=lambda c: c[:72])
def test_a_broken_command_fails(command):
    with pytest.raises(AssertionError):
        for words in split_commands(command):
            check_command(words)


def test_working_commands_pass():
    for command in ("mathverify fit --config configs/demo.yaml --model.lora_r 8 --ckpt_path last",
                    "mathverify score --model demo:best --input x.csv --output y.parquet --keep-above 0.9",
                    "CUDA_VISIBLE_DEVICES=0 mathverify check-data x.csv --max-length 512",
                    "srun mathverify validate --ckpt_path demo:best --data.val_files x.csv"):
        for words in split_commands(command):
            check_command(words)
