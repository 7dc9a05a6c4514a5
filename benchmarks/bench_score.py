"""Scoring throughput: ``mathverify score`` vs ``mathverify predict``, same checkpoint, same rows.

Each command runs as a user runs it (a fresh process: start-up, model load, the input read, the
output written), alternately, ``--repeats`` times each; the table gives the best wall time of each,
rows/s over it, the ratio, peak RSS, and the largest |P(True)| difference between the two outputs.

The checkpoint is ``--ckpt``, or a one-step fit of ``--config`` (speed does not depend on what
the weights learned) on ``--train-rows`` synthetic rows.

    python benchmarks/bench_score.py --config configs/demo.yaml --rows 2000
    python benchmarks/bench_score.py --config configs/smollm2-135m-cpu.yaml --backbone /tmp/smollm2 --rows 500
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(code)")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--backbone", default=None, help="overrides the config's model.backbone (e.g. a local SmolLM2)")
    p.add_argument("--ckpt", default=None, help="a checkpoint to use instead of a one-step fit")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", default=None, help="folder for the run and outputs (default: a temporary one)")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def one_step_config(config: str, work: Path, train_rows: int) -> Path:
    """The config with one round of one step, a small synthetic training set and validation."""
    import yaml

    spec = yaml.safe_load(Path(config).read_text())
    for callback in spec["trainer"]["callbacks"]:
        if isinstance(callback, dict) and callback.get("class_path") == "callbacks.rounds.StepRounds":
            callback["init_args"]["rounds"] = [{"steps": 1, "accumulate": 1}]
    spec["data"].update(train_files=f"synthetic:{train_rows}:0", val_size=50, val_scan_rows=train_rows)
    path = work / "one_step.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED, *cmd], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    rss = int(done.stderr.rsplit("maxrss_kb", 1)[1].split()[0])
    return seconds, rss


def main(argv=None) -> int:
    from mathverify.data.synthetic import write_rows

    args = parse(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-score-"))
    work.mkdir(parents=True, exist_ok=True)
    rows_file = write_rows(work / "rows.csv", args.rows, seed=21, test=True)
    mv = [sys.executable, "-m", "mathverify"]
    backbone = ["--model.backbone", args.backbone] if args.backbone else []
    ckpt = args.ckpt
    if ckpt is None:
        config = one_step_config(args.config, work, args.train_rows)
        subprocess.run(mv + ["fit", "--config", str(config), "--logs_dir", str(work / "runs"), "--run_name", "bench",
                             "--trainer.enable_progress_bar", "false", *backbone], cwd=ROOT, check=True,
                       capture_output=True)
        ckpt = str(work / "runs" / "bench" / "version_0" / "checkpoints" / "last.ckpt")
    predict = mv + ["predict", "--ckpt_path", ckpt, "--logs_dir", str(work / "runs"), "--data.predict_files",
                    str(rows_file), "--submission", str(work / "sub.csv"), "--probabilities", str(work / "p.csv"),
                    "--overwrite", "true", "--trainer.enable_progress_bar", "false"]
    score = mv + ["score", "--model", ckpt, "--input", str(rows_file), "--output", str(work / "scored.jsonl"),
                  "--overwrite", "--device", "cpu"]
    runs = {"predict": [], "score": []}
    for _ in range(args.repeats):
        for name, cmd in (("predict", predict), ("score", score)):
            runs[name].append(timed(cmd))
    with open(work / "p.csv", newline="") as handle:
        predicted = [float(r["p_true"]) for r in csv.DictReader(handle)]
    scored = [json.loads(line)["p_true"] for line in (work / "scored.jsonl").read_text().splitlines()]
    best = {name: min(r[0] for r in values) for name, values in runs.items()}
    result = {
        "config": args.config, "backbone": args.backbone, "rows": args.rows,
        "seconds": best, "rows_per_s": {k: args.rows / v for k, v in best.items()},
        "all_seconds": {k: [round(r[0], 2) for r in v] for k, v in runs.items()},
        "peak_rss_mb": {k: max(r[1] for r in v) / 1024 for k, v in runs.items()},
        "ratio_score_over_predict": best["predict"] / best["score"],
        "max_abs_p_diff": max(abs(a - b) for a, b in zip(predicted, scored)),
        "rows_compared": min(len(predicted), len(scored)),
    }
    print(f"{'command':<10}{'best s':>9}{'rows/s':>9}{'peak RSS MB':>13}  all runs (s)")
    for name in ("predict", "score"):
        print(f"{name:<10}{best[name]:>9.1f}{result['rows_per_s'][name]:>9.1f}{result['peak_rss_mb'][name]:>13.0f}  "
              f"{result['all_seconds'][name]}")
    print(f"score / predict speed: {result['ratio_score_over_predict']:.2f}x; "
          f"max |P(True) difference| {result['max_abs_p_diff']:.2e} over {result['rows_compared']} rows")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
