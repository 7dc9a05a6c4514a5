"""``mathverify check-data FILES``: read a data set once, as training would, and report what is in it.

It streams (files are read row by row, prompts tokenized in chunks), so a 1,000,000-row file takes
minutes and little memory: counters, a fixed-size reservoir of token lengths for the percentiles,
and one 8-byte key per *distinct* question (for the repeated-question count).

Usage::

    mathverify check-data data/train.csv [--backbone tiny] [--max-length 1024] [--rows N]
                          [--batch-size 4] [--accumulate 6] [--devices 1]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from mathverify.data.examples import clean_row, row_error
from mathverify.data.split import question_digest

RESERVOIR = 20_000  # token lengths kept for percentiles: p99 within a fraction of a percent
CHUNK = 256  # rows tokenized together (the tokenizer is much faster in batches)
EXAMPLES = 5  # bad rows quoted in the report


@dataclass
class Report:
    """Counts gathered in one pass; nothing here grows with the number of rows."""

    rows: int = 0
    usable: int = 0
    bad: Counter = field(default_factory=Counter)
    bad_examples: list = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)
    questions: Counter = field(default_factory=Counter)  # 64-bit question key -> rows
    lengths: list = field(default_factory=list)
    seen_lengths: int = 0
    max_length: int = 0
    truncated: int = 0


def check(files, encoder, rows: Optional[int] = None, seed: int = 0) -> Report:
    """Stream ``files`` (any spec ``resolve_parts`` takes) and fill a :class:`Report`."""
    from mathverify.data.sources import iter_rows, resolve_parts

    report, chunk, rng = Report(), [], random.Random(seed)
    for name, number, raw in iter_rows(resolve_parts(files)):
        if rows is not None and report.rows >= rows:
            break
        report.rows += 1
        row, reason, column = clean_row(raw, need_label="is_correct" in raw)
        if row is None:
            report.bad[reason] += 1
            if len(report.bad_examples) < EXAMPLES:
                report.bad_examples.append(str(row_error(name, number, reason, column, raw)))
            continue
        report.usable += 1
        report.labels[row.get("label", "none")] += 1
        report.questions[int(question_digest(row["question"])[:16], 16)] += 1
        chunk.append(row)
        if len(chunk) == CHUNK:
            _measure(report, encoder, chunk, rng)
            chunk = []
    if chunk:
        _measure(report, encoder, chunk, rng)
    return report


def _measure(report: Report, encoder, chunk: list[dict], rng: random.Random) -> None:
    ids, cut = encoder.encode(chunk)
    report.truncated += cut
    for one in ids:
        report.seen_lengths += 1
        report.max_length = max(report.max_length, len(one))
        if len(report.lengths) < RESERVOIR:  # reservoir sampling (Algorithm R): a uniform sample
            report.lengths.append(len(one))
        else:
            slot = rng.randrange(report.seen_lengths)
            if slot < RESERVOIR:
                report.lengths[slot] = len(one)


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile of a sample (``q`` in [0, 1])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0


def format_report(report: Report, max_length: int, batch_size: int, accumulate: int, devices: int) -> str:
    lines = [f"rows: {report.rows}", f"usable rows: {report.usable}", f"bad rows: {sum(report.bad.values())}"]
    lines += [f"  {reason}: {count}" for reason, count in report.bad.most_common()]
    lines += [f"  e.g. {example}" for example in report.bad_examples]
    total = sum(report.labels.values()) or 1
    labels = {1: "True", 0: "False", "none": "no label column"}
    lines.append("labels: " + ", ".join(f"{labels[k]} {v} ({v / total:.1%})" for k, v in sorted(
        report.labels.items(), key=lambda kv: str(kv[0]))))
    lines += _question_lines(report.questions)
    sample = report.lengths
    lines.append(f"tokens per prompt (max_length {max_length}): p50 {percentile(sample, .5)}, "
                 f"p90 {percentile(sample, .9)}, p99 {percentile(sample, .99)}, max {report.max_length}")
    lines.append(f"truncated: {report.truncated} ({report.truncated / max(report.usable, 1):.1%})")
    per_step = batch_size * accumulate * devices
    lines.append(f"optimizer steps per epoch at {batch_size} x {accumulate} x {devices} device(s): "
                 f"{math.ceil(report.usable / per_step)} (before the validation split)")
    return "\n".join(lines)


def _question_lines(questions: Counter) -> list[str]:
    if not questions:
        return ["questions: 0"]
    counts = sorted(questions.values())
    repeated = sum(1 for c in counts if c > 1)
    return [f"questions: {len(counts)} distinct; {repeated} appear in more than one row; rows per question: "
            f"min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mathverify check-data", description="Read a data set once, as training would, and report what is in it.")
    parser.add_argument("files", nargs="+", help="files, globs, folders, hub names or synthetic:ROWS[:SEED]")
    parser.add_argument("--backbone", default="tiny", help="tokenizer source (as --model.backbone)")
    parser.add_argument("--max-length", type=int, default=1024, help="as --model.max_length")
    parser.add_argument("--rows", type=int, default=None, help="read only the first N rows")
    parser.add_argument("--batch-size", type=int, default=4, help="micro-batch size, for the steps estimate")
    parser.add_argument("--accumulate", type=int, default=6, help="gradient accumulation, for the steps estimate")
    parser.add_argument("--devices", type=int, default=1, help="data-parallel devices, for the steps estimate")
    parser.add_argument("--trust-remote-code", action="store_true", help="let the tokenizer run hub code")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``mathverify check-data``; returns the exit code: 0 when every row is usable,
    3 when some rows are bad (reported; training would skip them), 1 on unreadable input, 2 on bad options."""
    from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder
    from mathverify.model.backbone import load_tokenizer

    args = _parser().parse_args(argv)
    if min(args.batch_size, args.accumulate, args.devices) < 1 or (args.rows is not None and args.rows < 1):
        print("mathverify check-data: error: --rows, --batch-size, --accumulate, --devices must be >= 1", file=sys.stderr)
        return 2
    try:
        tokenizer = load_tokenizer(args.backbone, args.trust_remote_code)
        encoder = PromptEncoder(tokenizer, SEED_TEMPLATE, "True", "False", args.max_length)
        report = check(args.files, encoder, rows=args.rows)
    except ValueError as err:  # DataError, PromptError, BackboneError: already one clear line
        print(f"mathverify check-data: error: {err}", file=sys.stderr)
        return 1
    print(format_report(report, args.max_length, args.batch_size, args.accumulate, args.devices))
    bad = sum(report.bad.values())
    if bad:  # scripts can stop on it; training would skip these rows (up to data.max_bad_fraction)
        print(f"mathverify check-data: {bad} bad row(s) of {report.rows}: exit status 3", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
