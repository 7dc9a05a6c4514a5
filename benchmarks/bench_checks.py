"""The solution checks (mathverify.evidence.checks) on real generated solutions: how often each fires,
P(correct) with and without it, per answering model, and the cost per row.

    python benchmarks/bench_checks.py

Reads the real answers of eight public models to GSM8K and MATH Level-5 problems
(``benchmarks/data``, ZeroEval results, Apache-2.0), each solution as the set holds it (the model's
reasoning, then "The final answer is $\\boxed{answer}$."). A check that spots a
writer's style rather than an error would show as a gap inside some models only: the per-model
lines show P(correct) flawed / not flawed for every model. Also times ``flawed`` per row in one
process and ``flawed_in_order`` over every row with all CPUs.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from real_cases import original_rows as rows_of  # noqa: E402  (a set's rows in its original order)

SETS = ("gsm8k", "math")


def share(rows: list[dict], bits: list[bool], want: bool) -> str:
    picked = [r["is_correct"] for r, b in zip(rows, bits) if b == want]
    return f"{sum(picked) / len(picked):.3f} ({len(picked)})" if picked else "-"


def main() -> int:
    from mathverify.evidence.answers import before_last_boxed
    from mathverify.evidence.checks import answer_supported, arithmetic, flawed, flawed_in_order

    for name in SETS:
        rows = rows_of(name)
        started = time.perf_counter()
        bits = [flawed(r["solution"], r["answer"]) for r in rows]
        per_row = (time.perf_counter() - started) / len(rows) * 1e6
        wrong = [arithmetic(before_last_boxed(r["solution"]))[1] > 0 for r in rows]
        unsupported = [not answer_supported(r["solution"], r["answer"]) for r in rows]
        started = time.perf_counter()
        again = [b for _, b in flawed_in_order(rows, lambda r: (r["solution"], r["answer"]))]
        parallel = time.perf_counter() - started
        assert again == bits
        print(f"{name}: {len(rows)} rows, {sum(r['is_correct'] for r in rows) / len(rows):.3f} correct; "
              f"flawed {sum(bits) / len(rows):.3f} of rows; {per_row:.0f} us per row in one process, "
              f"all rows in order with every CPU {parallel:.1f} s")
        print(f"  {'check':<24} {'fires on':>9} {'P(correct) when it fires':>26} {'when not':>16}")
        for label, fired in (("wrong arithmetic step", wrong), ("answer not in the body", unsupported), ("flawed (either)", bits)):
            print(f"  {label:<24} {sum(fired) / len(rows):>9.3f} {share(rows, fired, True):>26} {share(rows, fired, False):>16}")
        models = collections.defaultdict(list)
        for r, b in zip(rows, bits):
            models[r["model"]].append((r, b))
        for model, pairs in sorted(models.items()):
            sub, sub_bits = [r for r, _ in pairs], [b for _, b in pairs]
            print(f"    {model:<32} flawed {sum(sub_bits) / len(sub):.3f}  P(correct) flawed {share(sub, sub_bits, True):>12}"
                  f"  not {share(sub, sub_bits, False):>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
