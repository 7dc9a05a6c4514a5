"""Start-up cost of ``fit`` at scale: a fresh start, a resume and a second fresh start, on a large
CSV or Parquet file.

The demo config (evidence on) with two rounds of one step, stopped after round 1
(``stop_after_each_round``), then resumed with ``--ckpt_path last``, then a fresh start of another
run on the same files (what a re-run or a sweep's next trial pays; with the start-up cache it
reads no training file before training), and that once more without ``EvidenceWarmStart`` (what
the data work alone costs): each command's wall time is almost all start-up
(reading the training files: the validation split, the evidence index pass, the row index), since
a step of the tiny model takes milliseconds. The runs share the user's cache folder (tiny
backbone, row index, question keys) but start with an empty start-up cache (``mathverify.data.startup``),
so the first fresh start computes its state. ``--code`` runs another checkout of mathverify (e.g.
an older commit) on the same files, for a before/after.

    python benchmarks/bench_startup.py --rows 1000000 --format csv
    python benchmarks/bench_startup.py --rows 1000000 --format parquet --code /tmp/old-mathverify
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--code", default=str(ROOT), help="the mathverify checkout to run (default: this one)")
    p.add_argument("--work", default="/tmp/mathverify-bench-startup")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def two_rounds_config(config: Path, out: Path, warm_start: bool = True) -> Path:
    """The config with two rounds of one step, stopping after the first (without the evidence
    head's warm start if ``warm_start`` is False)."""
    import yaml

    spec = yaml.safe_load(config.read_text())
    if not warm_start:
        spec["trainer"]["callbacks"] = [c for c in spec["trainer"]["callbacks"]
                                        if not str(c.get("class_path", "")).endswith("EvidenceWarmStart")]
    for callback in spec["trainer"]["callbacks"]:
        if isinstance(callback, dict) and callback.get("class_path") == "callbacks.rounds.StepRounds":
            callback["init_args"] = {"rounds": [{"steps": 1}, {"steps": 1}], "stop_after_each_round": True}
    out.write_text(yaml.safe_dump(spec))
    return out


def main(argv=None) -> int:
    args = parse(argv)
    sys.path.insert(0, args.code)
    try:
        from mathverify.data.synthetic import write_rows
    except ImportError:  # a checkout from before the sub-packages (--code)
        from mathverify.synthetic import write_rows

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"train-{args.rows}.{args.format}"
    if not data.exists():
        t0 = time.perf_counter()
        write_rows(data, args.rows, seed=0)
        print(f"wrote {data} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    logs = work / f"logs-{Path(args.code).name}-{args.format}"
    config = two_rounds_config(Path(args.code) / "configs" / "demo.yaml", work / "two_rounds.yaml")
    cold = two_rounds_config(Path(args.code) / "configs" / "demo.yaml", work / "two_rounds_no_warm_start.yaml", False)
    def command(config: Path, run: str) -> list[str]:  # --config first: the flags after it override it
        return [sys.executable, "-m", "mathverify", "fit", "--config", str(config), "--logs_dir", str(logs),
                "--run_name", run, "--data.train_files", str(data), "--trainer.enable_progress_bar", "false"]

    # The user's cache (tiny backbone, row index, question keys: warm for every checkout alike), but
    # an empty start-up cache: the first fresh start computes its state, the second may take it.
    user_cache = Path(os.environ.get("MATHVERIFY_CACHE", Path.home() / ".cache" / "mathverify"))
    cache = work / f"cache-{Path(args.code).name}-{args.format}"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    cache.mkdir()
    for entry in user_cache.iterdir() if user_cache.is_dir() else []:
        if entry.name != "startup":
            (cache / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": args.code, "MATHVERIFY_CACHE": str(cache)}
    results = {}
    if logs.exists():
        import shutil

        shutil.rmtree(logs)
    runs = (("fresh", command(config, "startup")), ("resume", command(config, "startup") + ["--ckpt_path", "last"]),
            ("fresh_again", command(config, "again")), ("fresh_again_no_warm_start", command(cold, "again-cold")))
    for name, cmd in runs:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=args.code, env=env, capture_output=True, text=True)
        results[name] = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    print(f"{args.rows} rows, {args.format}, code {args.code}: fresh start {results['fresh']:.1f} s, "
          f"resume {results['resume']:.1f} s, second fresh start {results['fresh_again']:.1f} s, the same without the "
          f"evidence head's warm start {results['fresh_again_no_warm_start']:.1f} s (wall, each command)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "format": args.format, "code": args.code, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
