"""Ablation of the evidence of other solutions: text only / evidence only / both, on both views.

Runs ``mathverify fit`` once per variant (each in its own process, one after the other) with the
same config and data, then reads the last validation scalars from each run's TensorBoard events:

    python benchmarks/bench_evidence.py                       # the demo config, as shipped
    python benchmarks/bench_evidence.py --config configs/smollm2-135m-cpu.yaml -- --model.backbone /tmp/smollm2

Arguments after ``--`` go to every ``fit``. ``val/`` is the unseen-questions view (questions not in
training; evidence = the other validation rows' answers), ``val_seen/`` held-out rows of training
questions (evidence includes the labels of their training siblings).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "text only": ["--model.evidence", "false"],
    "evidence only": ["--model.evidence", "true", "--model.use_text", "false"],
    "text + evidence": ["--model.evidence", "true"],
}
COLUMNS = ("val/acc", "val/auroc", "val/majority_acc", "val/agreement_acc", "val/select_acc", "val/vote_acc",
           "val_seen/acc", "val_seen/auroc", "val_seen/majority_acc")


def last_scalars(run_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    logs = Path(tempfile.mkdtemp(prefix="mathverify-evidence-"))
    results = {}
    for name in args.variants.split(","):
        run = name.replace(" ", "").replace("+", "_")
        cmd = [sys.executable, "-m", "mathverify", "fit", "--config", args.config, "--logs_dir", str(logs),
               "--run_name", run, "--trainer.enable_progress_bar", "false", *VARIANTS[name], *extra]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: fit failed\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[name] = last_scalars(logs / run / "version_0")
        print(f"[{name}: {time.monotonic() - started:.0f} s]", file=sys.stderr)
    print(f"{'variant':<16}" + "".join(f" {c:>20}" for c in COLUMNS))
    for name, scalars in results.items():
        print(f"{name:<16}" + "".join(f" {scalars.get(c, float('nan')):>20.3f}" for c in COLUMNS))
    print(f"(runs kept in {logs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
