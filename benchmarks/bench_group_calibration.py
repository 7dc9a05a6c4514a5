"""Does the evidence head put each agreement group at its true rate, whatever the training questions' size?

A built case where every group's true rate is known: questions of one generator whose difficulty is
0.15, 0.5 or 0.85 (in turn), each solution right with that probability, else the generator's one
popular wrong answer (60 % of its errors: it repeats its mistakes) or a wrong answer of its own.
The head is fitted as ``EvidenceWarmStart`` fits it, on training questions of N solutions each, then
scores unseen test questions of 4 solutions each (no labels: the test file's rows only). Printed per
group of "how many of the 3 other solutions agree": rows, the true rate, the head's mean P(True)
and the difference. The sibling thinning of ``TrainingEvidence`` is what lets a head trained on 30
solutions per question judge a question of 4:

    python benchmarks/bench_group_calibration.py                       # N = 4, 8, 30
    python benchmarks/bench_group_calibration.py --sizes 30 --seeds 0,1,2

The draws are seeded: the same command prints the same table.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIFFICULTY = (0.15, 0.5, 0.85)
POPULAR = 0.6  # share of a wrong solution's answers that are the generator's one popular wrong answer


def question(rng: random.Random, n: int, number: int) -> list[tuple[str, int]]:
    """n solutions of question ``number``: (answer key, label)."""
    p = DIFFICULTY[number % len(DIFFICULTY)]
    out = []
    for _ in range(n):
        u = rng.random()
        if u < p:
            out.append(("right", 1))
        elif u < p + POPULAR * (1 - p):
            out.append(("popular", 0))
        else:
            out.append((f"wrong-{rng.random():.12f}", 0))
    return out


def test_groups(questions: int, seed: int, n: int = 4):
    """Features [R, F], labels [R] and "others agreeing" [R] of unseen test questions of n solutions."""
    import torch

    from mathverify.evidence.index import eval_features, pool_of

    rng, rows = random.Random(seed), []
    for number in range(questions):
        rows += [(f"test{number}", key, label) for key, label in question(rng, n, number)]
    pool = pool_of((digest, key, False) for digest, key, _ in rows)
    x = torch.tensor([eval_features(None, pool, digest, key, "pool") for digest, key, _ in rows])
    y = torch.tensor([label for _, _, label in rows], dtype=torch.float32)
    agreeing = torch.tensor([pool.counts(digest)[key][0] - 1 for digest, key, _ in rows])
    return x, y, agreeing


def fitted_head(size: int, training_rows: int, max_rows: int, draws: int, seed: int):
    """The evidence head after the warm start on training questions of ``size`` solutions each."""
    import torch

    from callbacks.evidence_warm_start import EvidenceWarmStart
    from mathverify.evidence.index import LOWERING, N_FEATURES, EvidenceIndex, TrainingEvidence
    from mathverify.model.heads import EvidenceHead

    rng, index = random.Random(seed), EvidenceIndex()
    for number in range(training_rows // size):
        for key, label in question(rng, size, number):
            index.add(f"train{number}", key, label)
    torch.manual_seed(seed)
    head = EvidenceHead(N_FEATURES, lowering=LOWERING)
    shown = TrainingEvidence(index, seed, *_datamodule_shares())  # the shares fit uses by default
    datamodule = SimpleNamespace(_training_evidence=lambda: shown, hparams=SimpleNamespace(seed=seed))
    trainer = SimpleNamespace(datamodule=datamodule, ckpt_path=None, global_step=0, strategy=object(), is_global_zero=True)
    EvidenceWarmStart(max_rows=max_rows, draws=draws).on_fit_start(trainer, SimpleNamespace(evidence_head=head))
    return head


def _datamodule_shares() -> tuple[float, float, float]:
    """The datamodule's default augmentation shares: hide_labels, thin_siblings, partial_labels."""
    import inspect

    from mathverify.data.datamodule import VerifyDataModule

    defaults = inspect.signature(VerifyDataModule.__init__).parameters
    return tuple(defaults[f"evidence_{name}"].default for name in ("hide_labels", "thin_siblings", "partial_labels"))


def group_table(size: int, training_rows: int, max_rows: int, draws: int, seed: int, test) -> list[tuple]:
    """Per group (others agreeing 0..3): (group, rows, true rate, mean P(True))."""
    import torch

    x, y, agreeing = test
    head = fitted_head(size, training_rows, max_rows, draws, seed)
    with torch.no_grad():
        p = torch.sigmoid(head(x))
    return [(k, int((agreeing == k).sum()), float(y[agreeing == k].mean()), float(p[agreeing == k].mean()))
            for k in range(4)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,8,30", help="solutions per training question, comma-separated")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--training-rows", type=int, default=120_000, help="labelled training rows generated")
    parser.add_argument("--max-rows", type=int, default=12_000, help="EvidenceWarmStart max_rows")
    parser.add_argument("--draws", type=int, default=16, help="EvidenceWarmStart draws")
    parser.add_argument("--test-questions", type=int, default=20_000, help="unseen test questions of 4 solutions")
    parser.add_argument("--test-seed", type=int, default=1, help="seed of the test questions")
    args = parser.parse_args(argv)
    test = test_groups(args.test_questions, seed=args.test_seed)
    print(f"{'N':>3} {'seed':>4} {'others agreeing':>15} {'rows':>6} {'true rate':>9} {'mean P':>7} {'diff':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            for k, rows, rate, mean_p in group_table(size, args.training_rows, args.max_rows, args.draws, seed, test):
                print(f"{size:>3} {seed:>4} {k:>15} {rows:>6} {rate:>9.3f} {mean_p:>7.3f} {mean_p - rate:>+6.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
