"""Accuracy on real generated solutions: fit + predict + score for every case, beside the no-model rules.

The cases are written by ``benchmarks/real_cases.py`` from the sets shipped in ``benchmarks/data/``
(sources and licences in its README): ``gsm8k`` / ``math`` (eight different models per question)
and ``gsm8k-gpt3`` / ``gsm8k-codex`` (one model family, or one model under nine prompts), each
``unseen`` (test questions never in training) and ``seen`` (half of each test question's labelled
solutions are in training, as in the contest). For every case and
variant this runs ``mathverify fit`` on the case's ``train.csv`` with the config as shipped (only
the file swapped), ``mathverify predict`` on ``test.csv`` with P(True) written out, then scores
every test row:

    python benchmarks/bench_real.py                                     # demo config, 4 cases x 3 variants
    python benchmarks/bench_real.py --variants both --cases gsm8k-seen
    python benchmarks/bench_real.py --variants evidence --per-question 4       # 4 solutions per question
    python benchmarks/bench_real.py --config configs/smollm2-135m-cpu.yaml -- --model.backbone /tmp/smollm2
    python benchmarks/bench_real.py --seeds 0,1,2 --variants evidence,both --cases math-unseen  # + a summary

``--seeds``: every case on each seed's split, each seed's table, then the mean and range over the
seeds of every goal quantity (``benchmarks/real_seeds.py``): a difference of a few rows on one
split is noise until the other splits show it too. ``--reuse`` scores the runs already in ``--dir``
(after a change to the scoring, or an interrupted benchmark) and fits only the missing ones.

Arguments after ``--`` go to every ``fit``. Columns: accuracy at the stored threshold (what a
submission gets), at 0.5, the predicted-True rate beside the truth, expected calibration error
(10 bins), AUROC; the rules: majority class, agreement (True iff another solution of the question,
test or training, gave the same answer string: the tool's rule) and, for seen, the known-label rule.
``floor`` (unseen cases) is the ECE of the pattern rule: each test row gets the training split's
rate of right rows with its agreement pattern, the best calibration a model of agreement alone can
learn from the split; what it misses is the split's own train/test difference. ``patrn`` is that
rule's accuracy at 0.5: what agreement alone, learnt from this split, reaches (beyond it a model
needs the answer's form, the solution checks or the text). ``--by`` groups show
the training split's rate beside the test's (``[train ...]``).
``--by`` adds accuracy per answering model and per number of same-question siblings (every
question's eight answers come from eight different models: a model that only spots a writer's
style would show as a per-model accuracy that follows the writer, not the answer) and, on seen
cases, per situation of the known-label rule (the row's answer labelled right, another answer
labelled right, the answer labelled wrong, no right label and the string agrees / is alone), beside
the rule's accuracy on the same rows.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_cases  # noqa: E402  (benchmarks/real_cases.py: the sets and their splits)
import real_seeds  # noqa: E402  (benchmarks/real_seeds.py: several seeds' summary)

CASES = ("gsm8k-unseen", "gsm8k-seen", "math-unseen", "math-seen")
ONE_GENERATOR = ("gsm8k-gpt3-unseen", "gsm8k-gpt3-seen", "gsm8k-codex-unseen", "gsm8k-codex-seen")  # --cases
VARIANTS = {
    "text": ["--model.evidence", "false"],
    "evidence": ["--model.evidence", "true", "--model.use_text", "false"],
    "both": ["--model.evidence", "true"],
}
csv.field_size_limit(1 << 30)


def make_case(case: str, folder: Path, seed: int) -> str:
    """Write the case's files (``real_cases.write_case``); returns its reference line."""
    name, mode = case.rsplit("-", 1)  # set names may hold a hyphen: gsm8k-gpt3-unseen
    return real_cases.write_case(name, folder, mode, seed=seed)


def keep_per_question(folder: Path, k: int, seed: int) -> None:
    """Keep at most ``k`` solutions per question (a seeded draw): fewer siblings, as in sets of N samples.

    A question with rows on both sides (seen) keeps k // 2 training rows and the rest as test rows."""
    import random

    rng = random.Random(seed)
    train, test = read_csv(folder / "train.csv"), read_csv(folder / "test.csv")
    sides = collections.defaultdict(lambda: ([], []))
    for r in train:
        sides[r["question"]][0].append(r)
    for r in test:
        sides[r["question"]][1].append(r)
    keep = set()
    for in_train, in_test in sides.values():
        n_train = k if not in_test else 0 if not in_train else k // 2
        for rows, n in ((in_train, n_train), (in_test, k - n_train)):
            keep.update(id(r) for r in rng.sample(rows, min(n, len(rows))))
    labels = read_csv(folder / "test_labels.csv")
    kept_ids = {r["ID"] for r in test if id(r) in keep}
    for name, rows in (("train.csv", [r for r in train if id(r) in keep]), ("test.csv", [r for r in test if id(r) in keep]),
                       ("test_labels.csv", [r for r in labels if r["ID"] in kept_ids])):
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def writer_of_rows(case: str) -> dict[tuple[str, str], str]:
    """(question, solution) -> answering model (the case files drop the model)."""
    return {(r["question"], r["solution"]): r["model"] for r in real_cases.original_rows(case.rsplit("-", 1)[0])}


def rules(folder: Path) -> dict[str, list]:
    """The reference rules' decision per test row (``real_cases.rule_decisions``), and the
    situation that decides the known-label rule's answer ("situation", for ``--by``)."""
    train, test = read_csv(folder / "train.csv"), read_csv(folder / "test.csv")
    known = collections.defaultdict(list)
    for r in train:
        known[r["question"]].append((r["answer"], r["is_correct"] == "True"))
    siblings = collections.defaultdict(list)
    for r in test:
        siblings[r["question"]].append(r["ID"])
    answer = {r["ID"]: r["answer"] for r in test}
    agreement, known_label, situation, agreeing = [], [], [], []
    for r in test:
        others = [answer[i] for i in siblings[r["question"]] if i != r["ID"]] + [a for a, _ in known[r["question"]]]
        agree, guess, where = real_cases.rule_decisions(r["answer"], others, known[r["question"]])
        agreeing.append(others.count(r["answer"]))
        agreement.append(agree)
        known_label.append(guess)
        situation.append(where)
    # The pattern rule (unseen cases): P(True) = the training split's rate of right rows among those
    # with the same agreement pattern in their own question (this answer's other votes, the other
    # answers' votes). The best a model of agreement alone can learn from this split: its ECE on
    # test is how far the split's own train and test rates differ (the calibration noise floor).
    by_pattern, train_right = collections.defaultdict(list), collections.defaultdict(list)
    train_questions = collections.defaultdict(list)
    for r in train:
        train_questions[r["question"]].append(r["answer"])
    for r in train:
        pattern = _pattern(r["answer"], train_questions[r["question"]])
        by_pattern[pattern].append(r["is_correct"] == "True")
        train_right[min(pattern[0], 3)].append(r["is_correct"] == "True")
    overall = sum(r["is_correct"] == "True" for r in train) / max(1, len(train))
    pattern_p = []
    for r in test:
        rates = by_pattern.get(_pattern(r["answer"], [answer[i] for i in siblings[r["question"]]]))
        pattern_p.append(sum(rates) / len(rates) if rates else overall)
    return {"agreement": agreement, "known-label": known_label, "situation": situation, "agreeing": agreeing,
            "pattern": pattern_p, "train_right": {k: sum(v) / len(v) for k, v in train_right.items()}}


def _pattern(mine: str, answers: list[str]) -> tuple:
    """(other rows with this answer, the other answers' vote counts, largest first); ``answers``
    holds the row's own answer once."""
    votes = collections.Counter(answers)
    return votes[mine] - 1, tuple(sorted((v for a, v in votes.items() if a != mine), reverse=True))


def auroc(p: list[float], y: list[bool]) -> float:
    order = sorted(range(len(p)), key=lambda i: p[i])
    ranks, i = [0.0] * len(p), 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and p[order[j + 1]] == p[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(y)
    neg = len(y) - pos
    if not pos or not neg:
        return float("nan")
    return (sum(r for r, t in zip(ranks, y) if t) - pos * (pos + 1) / 2) / (pos * neg)


def ece(p: list[float], y: list[bool], bins: int = 10) -> float:
    """Expected calibration error: |mean P(True) - share True| per equal-width bin, weighted by rows."""
    total = 0.0
    for b in range(bins):
        members = [i for i, v in enumerate(p) if min(int(v * bins), bins - 1) == b]
        if members:
            total += abs(sum(p[i] for i in members) / len(members) - sum(y[i] for i in members) / len(members)) * len(members)
    return total / len(p)


def score(folder: Path, run_dir: Path, by: bool, writers: dict, reference: dict) -> dict:
    """``reference``: ``rules(folder)``, computed once per case."""
    test = read_csv(folder / "test.csv")
    labels = {r["ID"]: r["is_correct"] == "True" for r in read_csv(folder / "test_labels.csv")}
    submitted = {r["ID"]: r["is_correct"] == "True" for r in read_csv(run_dir / "submission.csv")}
    probs = {r["ID"]: float(r["p_true"]) for r in read_csv(run_dir / "probabilities.csv")}
    ids = [r["ID"] for r in test]
    y = [labels[i] for i in ids]
    p = [probs[i] for i in ids]
    decided = [submitted[i] for i in ids]
    n = len(ids)
    out = {"acc": sum(d == t for d, t in zip(decided, y)) / n,
           "acc@0.5": sum((v > 0.5) == t for v, t in zip(p, y)) / n,
           "pred_true": sum(decided) / n, "true": sum(y) / n, "ece": ece(p, y), "auroc": auroc(p, y),
           "groups": agreement_groups(reference, decided, y, p)}
    if by:
        groups = collections.defaultdict(list)
        count = collections.Counter(r["question"] for r in test)
        train_count = collections.Counter(r["question"] for r in read_csv(folder / "train.csv"))
        for r, d, t in zip(test, decided, y):
            groups["model " + writers.get((r["question"], r["solution"]), "?")].append(d == t)
            groups[f"siblings {count[r['question']] - 1 + train_count[r['question']]}"].append(d == t)
        out["by"] = {k: (sum(v) / len(v), len(v)) for k, v in sorted(groups.items())}
        for k, g in out["groups"].items():
            train = f" [train {g['train']:.2f}]" if g["train"] is not None else ""
            label = f"others agreeing {k}{'+' if k == 3 else ''} (right {g['right']:.2f}{train}, " \
                    f"mean P {g['mean_p']:.2f}, pred True {g['pred_true']:.2f}, rule {g['rule']:.4f})"
            out["by"][label] = (g["acc"], g["rows"])
        # Seen cases: accuracy where the known-label rule decides by a label and where it falls back
        # on agreement, beside the rule's own accuracy on the same rows.
        situated = collections.defaultdict(lambda: [0, 0, 0])  # rows, model right, rule right
        for where, d, t, g in zip(reference["situation"], decided, y, reference["known-label"]):
            if where is not None:
                situated[where][0] += 1
                situated[where][1] += d == t
                situated[where][2] += g == t
        for where, (rows, right, rule_right) in sorted(situated.items()):
            out["by"][f"{where} (rule {rule_right / rows:.4f})"] = (right / rows, rows)
    return out


def agreement_groups(reference: dict, decided: list, y: list, p: list) -> dict[int, dict]:
    """Test rows grouped by how many other solutions of the question (test or training) gave the same
    answer string (3 = 3 or more): where agreement says little (one generator), the model's own
    reading has to decide. Per group: rows, accuracy, the agreement rule's accuracy on the same
    rows, the true rate, the training split's rate (None if absent), mean P(True), predicted True."""
    members = collections.defaultdict(list)
    for k, d, t, g, v in zip(reference["agreeing"], decided, y, reference["agreement"], p):
        members[min(k, 3)].append((d, t, g, v))
    return {k: {"rows": len(rows), "acc": sum(d == t for d, t, _, _ in rows) / len(rows),
                "rule": sum(g == t for _, t, g, _ in rows) / len(rows), "right": sum(t for _, t, _, _ in rows) / len(rows),
                "train": reference["train_right"].get(k), "mean_p": sum(v for *_, v in rows) / len(rows),
                "pred_true": sum(d for d, *_ in rows) / len(rows)}
            for k, rows in sorted(members.items())}


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-4000:]}")


def run_cases(args, extra: list[str], seed: int, work: Path) -> list[dict]:
    """Every case x variant on the split of ``seed``: fit, predict, score; one result per pair."""
    table = []
    for case in args.cases.split(","):
        folder = work / "cases" / case
        if case.rsplit("-", 1)[-1] not in ("unseen", "seen") or case.rsplit("-", 1)[0] not in real_cases.SETS:
            raise SystemExit(f"unknown case {case!r}: one of {', '.join(CASES + ONE_GENERATOR)}")
        print(make_case(case, folder, seed), file=sys.stderr)
        if args.per_question:
            keep_per_question(folder, args.per_question, seed)
        labels = {r["ID"]: r["is_correct"] == "True" for r in read_csv(folder / "test_labels.csv")}
        y = [labels[r["ID"]] for r in read_csv(folder / "test.csv")]
        refs = {"majority": max(sum(y), len(y) - sum(y)) / len(y), "seed": seed}
        reference = rules(folder)
        for rule in ("agreement", "known-label") if case.endswith("-seen") else ("agreement",):
            refs[rule] = sum(d == t for d, t in zip(reference[rule], y)) / len(y)
        if case.endswith("-unseen"):
            refs["pattern_ece"] = ece(reference["pattern"], y)
            refs["pattern"] = sum((v > 0.5) == t for v, t in zip(reference["pattern"], y)) / len(y)
        writers = writer_of_rows(case) if args.by else {}
        for variant in args.variants.split(","):
            run_name = f"{case}-{variant}" + (f"-k{args.per_question}" if args.per_question else "")
            run_dir = work / "runs" / run_name / "version_0"
            started, fit_s = time.monotonic(), float("nan")
            if not (args.reuse and (run_dir / "probabilities.csv").exists()):
                run([sys.executable, "-m", "mathverify", "fit", "--config", args.config, "--logs_dir", str(work / "runs"),
                     "--run_name", run_name, "--trainer.enable_progress_bar", "false",
                     "--data.train_files", str(folder / "train.csv"), *VARIANTS[variant], *extra])
                fit_s = time.monotonic() - started
                run([sys.executable, "-m", "mathverify", "predict", "--logs_dir", str(work / "runs"),
                     "--ckpt_path", f"{run_name}:best", "--data.predict_files", str(folder / "test.csv"),
                     "--probabilities", str(run_dir / "probabilities.csv"), "--trainer.enable_progress_bar", "false"])
            result = score(folder, run_dir, args.by, writers, reference)
            result.update(case=case + (f"/{args.per_question}" if args.per_question else ""), variant=variant, fit_s=fit_s, **refs)
            table.append(result)
            print(json.dumps({k: v for k, v in result.items() if k not in ("by", "groups")}), file=sys.stderr, flush=True)
    return table


def print_table(table: list[dict]) -> None:
    # pattern / floor: the pattern rule's accuracy at 0.5 and its ECE (unseen cases; see rules())
    print(f"{'case':<20} {'variant':<9} {'acc':>6} {'acc@0.5':>7} {'predT':>6} {'true':>6} {'ECE':>6} {'AUROC':>6} "
          f"{'major':>6} {'agree':>6} {'known':>6} {'patrn':>6} {'floor':>6} {'fit s':>6}")
    for r in table:
        known = f"{r['known-label']:.4f}" if "known-label" in r else ""
        pattern = f"{r['pattern']:.4f}" if "pattern" in r else ""
        floor = f"{r['pattern_ece']:.4f}" if "pattern_ece" in r else ""
        print(f"{r['case']:<20} {r['variant']:<9} {r['acc']:.4f} {r['acc@0.5']:>7.4f} {r['pred_true']:.4f} "
              f"{r['true']:.4f} {r['ece']:.4f} {r['auroc']:.4f} {r['majority']:.4f} {r['agreement']:.4f} "
              f"{known:>6} {pattern:>6} {floor:>6} {r['fit_s']:>6.0f}")
    for r in table:
        for key, (acc, n) in r.get("by", {}).items():
            print(f"  {r['case']:<20} {r['variant']:<9} {key:<50} {acc:.4f} ({n} rows)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated, of: " + ", ".join(CASES + ONE_GENERATOR))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="the cases' split seed (benchmarks/real_cases.py --seed)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated split seeds: every case on each, then their summary (benchmarks/real_seeds.py)")
    parser.add_argument("--per-question", type=int, default=0,
                        help="keep at most this many solutions per question (e.g. 4: as in sets of 4 samples); 0 = all 8")
    parser.add_argument("--by", action="store_true", help="also accuracy per answering model and per sibling count")
    parser.add_argument("--dir", default=None, help="where cases and runs go (default: a new temporary folder)")
    parser.add_argument("--reuse", action="store_true",
                        help="score the runs already in --dir as they are (fit and predict only the missing ones)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mathverify-real-"))
    tables = {}
    for seed in seeds:
        tables[seed] = run_cases(args, extra, seed, work / f"seed{seed}" if args.seeds else work)
        if args.seeds:
            print(f"split seed {seed}:")
        print_table(tables[seed])
    if args.seeds:
        print("\n".join(real_seeds.summary_lines(tables)))
    print(f"(cases and runs in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
