"""Size and build time of the evidence index for N contest-like rows, and per-row lookup cost.

    python benchmarks/bench_evidence_index.py --rows 1000000

Rows come from the built-in generator (1-12 solutions per question, mean 5.5: more distinct
questions than the contest's ~15k at a million rows, so a pessimistic size). Prints the pass time,
the index's questions / distinct answers, its JSON size (what checkpoints hold) and gzip size (what
``export`` writes), the memory the pass added (peak RSS), the cost of one leave-one-out lookup, and
the symbolic equality stage on real MATH answers (``benchmarks/data/math``), in one and in all processes.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from mathverify.data.sources import resolve_parts
    from mathverify.data.index_pass import build_index
    from mathverify.evidence.index import TrainingEvidence, eval_features, pool_of

    build_index(resolve_parts("synthetic:10:0"), lambda digest: False, 0.0, 0)  # imports (datasets) first
    before = rss_mb()
    started = time.perf_counter()
    index, held = build_index(resolve_parts(f"synthetic:{args.rows}:0"), lambda digest: False, 0.0, 0)
    seconds = time.perf_counter() - started
    grown = rss_mb() - before
    size = index.size()
    text = index.to_json()
    packed = gzip.compress(text.encode())
    print(f"rows {size['rows']:,}  questions {size['questions']:,}  distinct answers {size['answers']:,}")
    print(f"pass {seconds:.1f} s ({size['rows'] / seconds:,.0f} rows/s, generating the rows included)")
    print(f"index JSON {len(text) / 1e6:.1f} MB, gzip {len(packed) / 1e6:.1f} MB, peak RSS grew {grown:.0f} MB")
    digests = list(index.questions)[:2000]
    keys = [next(iter(index.questions[d])) for d in digests]
    train = TrainingEvidence(index, seed=0)
    started = time.perf_counter()
    for i, (d, k) in enumerate(zip(digests, keys)):
        train(d, k, int(index.questions[d][k][1] > 0), 0, i)
    per_train = (time.perf_counter() - started) / len(digests) * 1e6
    pool = pool_of((d, k, False) for d, k in zip(digests, keys))
    started = time.perf_counter()
    for d, k in zip(digests, keys):
        eval_features(index, pool, d, k, "pool")
    per_eval = (time.perf_counter() - started) / len(digests) * 1e6
    print(f"features per row: training {per_train:.0f} us, evaluation {per_eval:.0f} us")
    equality_on_real_math()
    return 0


def equality_on_real_math() -> None:
    """The symbolic stage (math-verify) on real LaTeX answers: the MATH Level-5 set in benchmarks/data/math
    (721 questions x 8 models), one process and every CPU. Synthetic answers are plain numbers and
    never reach it, so this is where its cost shows."""
    import collections
    import os

    from mathverify.evidence import equality
    from mathverify.evidence.answers import answer_key
    from mathverify.evidence.equality import all_classes, needs_symbolic

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_cases import original_rows

    votes = collections.defaultdict(collections.Counter)
    for row in original_rows("math"):
        votes[row["source_id"]][answer_key(row["answer"])] += 1
    symbolic = sum(needs_symbolic(v) for v in votes.values())
    equality.PARALLEL_MIN_QUESTIONS = 1  # this small set in worker processes too, to time them
    for workers in (1, os.cpu_count() or 1):
        equality._parsed.cache_clear()  # every run parses from scratch (workers start empty anyway)
        started = time.perf_counter()
        aliases = all_classes(votes, workers=workers)
        seconds = time.perf_counter() - started
        print(f"equality classes, real MATH answers: {len(votes)} questions ({symbolic} with formulas), "
              f"{sum(len(a) for a in aliases.values())} answers merged, {seconds:.1f} s with {workers} process(es)")


if __name__ == "__main__":
    raise SystemExit(main())
