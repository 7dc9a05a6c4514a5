"""Real generated solutions as contest-format cases: the development benchmark for accuracy.

The sets ship in ``benchmarks/data/`` (sources and licences in its README), one folder each, already
split the way the demo and ``bench_real.py`` use them by default (``unseen``, seed 0, train share 0.6):
``train.jsonl.gz`` (question, answer, solution, is_correct, model, source_id, source_row) and
``test.jsonl.gz`` (the same with the contest's ``ID`` first). Both read as they are
(``mathverify fit --data.train_files benchmarks/data/gsm8k/train.jsonl.gz``). ``source_row`` is the
row's line in the original file, so any other split is drawn from the original order:

    python benchmarks/real_cases.py CASE OUT [--mode unseen|seen] [--train-share 0.6] [--seed 0]
    python benchmarks/real_cases.py score OUT submission.csv

CASE: gsm8k, math, gsm8k-gpt3, gsm8k-codex. Writes ``OUT/train.csv`` (question, answer, solution,
is_correct), ``OUT/test.csv`` (ID, question, answer, solution) and ``OUT/test_labels.csv`` (ID,
is_correct), split by question. ``unseen``: test questions never appear in training. ``seen``: half
of each test question's solutions (labelled) go to training and the other half are the test rows,
as in the contest. Prints the test rows' reference figures: the majority share, the agreement rule
(True iff another solution of the question, in the test or training file, gave the same answer
string) and, for seen, the known-label rule (True iff the answer is one labelled correct in
training; False if another answer is, or if the answer is labelled wrong; else the agreement rule).

The draw: questions sorted by source id, shuffled with ``random.Random(seed)``; the first
``train_share`` go to training; each test question's rows are shuffled and, for seen, the first
half go to training; then the training rows and the test rows are shuffled. The shipped folders are
this draw (unseen, seed 0), which ``tests/test_real_cases.py`` checks.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io
import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SETS = ("gsm8k", "math", "gsm8k-gpt3", "gsm8k-codex")
TRAIN_COLUMNS = ("question", "answer", "solution", "is_correct")


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def original_rows(name: str, data: Path = DATA) -> list[dict]:
    """Every row of a shipped set, in the order of its original file (by ``source_row``)."""
    if name not in SETS:
        raise SystemExit(f"unknown set {name!r}: one of {', '.join(SETS)}")
    rows = read_jsonl(data / name / "train.jsonl.gz") + read_jsonl(data / name / "test.jsonl.gz")
    return sorted(rows, key=lambda r: r["source_row"])


def question_groups(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped by question (source id), groups sorted by that id, rows in original order."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["source_id"]].append(row)
    return [groups[key] for key in sorted(groups)]


def draw(groups: list[list[dict]], mode: str, train_share: float, seed: int):
    """The split (see the module docstring): ``(train rows, [(test row, its question's test rows,
    its question's training rows)])``, both in their final shuffled order."""
    if mode not in ("unseen", "seen"):
        raise SystemExit(f"--mode must be unseen or seen, not {mode!r}")
    groups = list(groups)
    rng = random.Random(seed)
    rng.shuffle(groups)
    cut = int(len(groups) * train_share)
    train = [row for group in groups[:cut] for row in group]
    test = []
    for group in groups[cut:]:
        group = list(group)
        rng.shuffle(group)
        half = len(group) // 2 if mode == "seen" else 0
        known, tested = group[:half], group[half:]
        train += known
        test += [(row, tested, known) for row in tested]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


KNOWN_LABEL_DECIDES = {"answer labelled right": True, "another answer labelled right": False,
                       "answer labelled wrong": False}  # any other situation: the agreement rule


def rule_decisions(answer: str, others: list[str], known: list[tuple[str, bool]]) -> tuple[bool, bool, str | None]:
    """The no-model rules on one test row: ``(agreement, known-label, situation)``.

    ``others``: every other answer string of the question (test and training rows); ``known``: the
    question's training rows as (answer, labelled correct). ``situation`` names what decided the
    known-label rule (None: the question has no labelled row, as in unseen cases)."""
    agree = answer in others
    right = {a for a, ok in known if ok}
    wrong = {a for a, ok in known if not ok}
    situation = (None if not known else "answer labelled right" if answer in right
                 else "another answer labelled right" if right else "answer labelled wrong" if answer in wrong
                 else "no right label, string agrees" if agree else "no right label, string alone")
    return agree, KNOWN_LABEL_DECIDES.get(situation, agree), situation


def reference_line(name: str, mode: str, train: list[dict], test: list[tuple]) -> str:
    n = len(test)
    positives = sum(row["is_correct"] for row, _, _ in test)
    agree_right = known_right = 0
    for row, siblings, known in test:
        others = [s["answer"] for s in siblings if s is not row] + [k["answer"] for k in known]
        agree, guess, _ = rule_decisions(row["answer"], others, [(k["answer"], k["is_correct"]) for k in known])
        agree_right += agree == row["is_correct"]
        known_right += guess == row["is_correct"]
    questions = len({id(siblings) for _, siblings, _ in test})
    extra = f", known-label rule {known_right / n:.4f}" if mode == "seen" else ""
    return (f"{name} {mode}: train rows {len(train)}, test rows {n} of {questions} questions; test majority "
            f"{max(positives, n - positives) / n:.4f}, agreement rule {agree_right / n:.4f}{extra}")


def write_case(name: str, out: Path, mode: str = "unseen", train_share: float = 0.6, seed: int = 0,
               data: Path = DATA) -> str:
    """Write the case's three CSV files into ``out``; returns the reference line."""
    train, test = draw(question_groups(original_rows(name, data)), mode, train_share, seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRAIN_COLUMNS)
        writer.writerows([row[c] for c in TRAIN_COLUMNS] for row in train)
    with (out / "test.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("ID", "question", "answer", "solution"))
        writer.writerows((i, row["question"], row["answer"], row["solution"]) for i, (row, _, _) in enumerate(test))
    with (out / "test_labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("ID", "is_correct"))
        writer.writerows((i, row["is_correct"]) for i, (row, _, _) in enumerate(test))
    return reference_line(name, mode, train, test)


def shipped_split(rows: list[dict], seed: int = 0, train_share: float = 0.6) -> tuple[list[dict], list[dict]]:
    """The rows of the shipped ``train.jsonl.gz`` and ``test.jsonl.gz`` (unseen, with ``ID``)."""
    columns = ("question", "answer", "solution", "is_correct", "model", "source_id", "source_row")
    train, test = draw(question_groups(rows), "unseen", train_share, seed)
    return ([{c: row[c] for c in columns} for row in train],
            [{"ID": i, **{c: row[c] for c in columns}} for i, (row, _, _) in enumerate(test)])


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Byte-for-byte reproducible gzip (no file name or time in the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as packed:
        with io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def pack(name: str, original: Path, data: Path = DATA) -> None:
    """Ship an original set (lines of id, question, model, reasoning, answer, is_correct) as its folder.

    The solution is the model's reasoning followed by "The final answer is $\\boxed{answer}$."."""
    rows = []
    for number, row in enumerate(read_jsonl(original)):
        rows.append({"question": row["question"], "answer": row["answer"],
                     "solution": row["reasoning"] + f"\n\nThe final answer is $\\boxed{{{row['answer']}}}$.",
                     "is_correct": bool(row["is_correct"]), "model": row["model"], "source_id": row["id"],
                     "source_row": number})
    train, test = shipped_split(rows)
    write_jsonl(data / name / "train.jsonl.gz", train)
    write_jsonl(data / name / "test.jsonl.gz", test)


def score(out: Path, submission: Path) -> str:
    with (out / "test_labels.csv").open(newline="") as handle:
        labels = {r["ID"]: r["is_correct"] for r in csv.DictReader(handle)}
    with submission.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if sorted(r["ID"] for r in rows) != sorted(labels):
        raise SystemExit(f"{submission}: its IDs differ from {out / 'test_labels.csv'}")
    right = sum(r["is_correct"] == labels[r["ID"]] for r in rows)
    return f"accuracy {right / len(rows):.4f} on {len(rows)} rows"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=[*SETS, "score"], help="the set, or score")
    parser.add_argument("out", help="the case folder to write (or, for score, to score against)")
    parser.add_argument("submission", nargs="?", help="score: the submission CSV (ID,is_correct)")
    parser.add_argument("--mode", choices=["unseen", "seen"], default="unseen")
    parser.add_argument("--train-share", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.case == "score":
        if not args.submission:
            parser.error("score needs the submission CSV")
        print(score(Path(args.out), Path(args.submission)))
    else:
        print(write_case(args.case, Path(args.out), args.mode, args.train_share, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
