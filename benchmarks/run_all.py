"""Run the whole suite and print one report: matmul peak, padding, training, prediction, MFU, profile.

    bash benchmarks/run.sh            # quick mode (minutes on 2 CPU cores)
    bash benchmarks/run.sh --full     # SmolLM2-135M shape, all 30 layers, ~390-token rows (not run: ~30+ min on 2 quiet cores)

Each benchmark writes JSON under ``--out`` (default ``benchmarks/results/<mode>``); the report is
printed and written to ``report.md`` there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, markdown_table  # noqa: E402

GOALS = {"train": 2.0, "memory": 0.6, "predict": 2.0}


def run(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error",
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--train-args", default="", help="extra arguments for bench_train.py")
    p.add_argument("--predict-args", default="", help="extra arguments for bench_predict.py")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the JSON files in --out")
    args = p.parse_args(argv)
    mode = "full" if args.full else "quick"
    out = Path(args.out or HERE / "results" / mode)
    out.mkdir(parents=True, exist_ok=True)
    quick = [] if args.full else ["--quick"]
    load_before = os.getloadavg()

    if args.report_only:
        loads = json.loads((out / "load.json").read_text()) if (out / "load.json").is_file() else {}
        nan = (float("nan"),) * 3
        return report(out, mode, loads.get("before", nan), loads.get("after", nan))
    run("bench_matmul.py", "--json", str(out / "matmul.json"))
    peak = json.loads((out / "matmul.json").read_text())
    run("bench_padding.py", *quick, "--json", str(out / "padding.json"))
    run("bench_train.py", *quick, "--rounds", "2", "--profile", "--matmul-peak-gflops", str(peak["best_gflops"]),
        "--json", str(out / "train.json"), *args.train_args.split())
    run("bench_predict.py", *quick, "--json", str(out / "predict.json"), *args.predict_args.split())
    load_after = os.getloadavg()
    (out / "load.json").write_text(json.dumps({"before": load_before, "after": load_after}))
    return report(out, mode, load_before, load_after)


def report(out: Path, mode: str, load_before, load_after) -> int:
    train = json.loads((out / "train.json").read_text())
    predict = json.loads((out / "predict.json").read_text())
    padding = json.loads((out / "padding.json").read_text())["results"]
    by = {r["contender"]: r for r in train["results"]}
    o, t = by["ours"], by["trl"]
    pr = predict["results"]
    peak = json.loads((out / "matmul.json").read_text())
    measured = peak["best_gflops"]
    peak = dict(peak, best_gflops=max([measured] + [r.get("probe_gflops") or 0 for r in train["results"]]))

    lines = [f"# mathverify benchmarks ({mode} mode)", "",
             f"{datetime.datetime.fromtimestamp((out / 'predict.json').stat().st_mtime, datetime.timezone.utc):%Y-%m-%d %H:%M}"
             f" UTC; {machine().split(', load avg')[0]}",
             f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
             f"(above the core count means other processes shared the CPU and timings are noisy)", ""]
    lines += ["## Goals (ratios ours / seed recipe)", ""]
    ratios = [
        ["training examples/s", o["examples_per_s"] / t["examples_per_s"], f">= {GOALS['train']}"],
        ["training examples/s, each divided by its process's GEMM probe (contention-normalised)",
         (o["examples_per_s"] / o["probe_gflops"]) / (t["examples_per_s"] / t["probe_gflops"]), "-"],
        ["training tokens/s (each side's real tokens)", o["tokens_per_s"] / t["tokens_per_s"], "-"],
        ["peak memory (RSS, own process)", o["peak_mem_mb"] / t["peak_mem_mb"], f"<= {GOALS['memory']}"],
        ["peak memory above the loaded model", (o["peak_mem_mb"] - o["rss_after_load_mb"])
         / max(1e-9, t["peak_mem_mb"] - t["rss_after_load_mb"]), "-"],
        ["prediction rows/s", pr["ratio_ours_seed"], f">= {GOALS['predict']}"],
    ]
    for r in ratios:
        goal = r[2]
        if goal.startswith(">="):
            r.append("met" if r[1] >= float(goal[3:]) else "short")
        elif goal.startswith("<="):
            r.append("met" if r[1] <= float(goal[3:]) else "short")
        else:
            r.append("-")
    lines += [markdown_table(["measure", "ours / seed", "goal", ""], ratios), ""]
    lines += ["## Training", "", train["setup"], ""]
    lines += [_train_table(train["results"], peak["best_gflops"]), ""]
    lines += ["## Prediction", "", predict["setup"], ""]
    sys.path.insert(0, str(HERE))
    from bench_predict import table as predict_table

    lines += [predict_table(pr), ""]
    lines += ["## Padding (TrainStream micro-batches)", ""]
    lines += [markdown_table(
        ["length-scale", "tokens/row mean (min-max)", "micro-batch", "buffer", "shuffled", "grouped by length"],
        [[r["length_scale"], f"{r['mean_tokens']:.0f} ({r['min_tokens']}-{r['max_tokens']})", r["batch_size"],
          r["buffer_size"], f"{100 * r['shuffled']:.1f}%", f"{100 * r['grouped']:.1f}%"] for r in padding]), ""]
    lines += ["## MFU", "",
              f"Matmul peak: {peak['size']}x{peak['size']} {peak['dtype']} GEMM ({peak['threads']} threads): "
              f"**{peak['best_gflops']:.1f} GFLOP/s**, the best of the dedicated measurement "
              f"({measured:.1f}, best of {peak['reps']} reps) and the probes each training process ran "
              "before and after its timed steps (on a shared CPU the rate moves with the load).", "",
              "Model FLOPs per computed token (real tokens minus the positions a shared prefix skips) = 6 x (decoder parameters, frozen + LoRA, + the lm_head rows used: "
              "2 for ours, the whole vocabulary for TRL); attention's T^2 term and the embedding lookup are left "
              "out. A frozen weight needs no weight gradient, so the work actually required is nearer 4x than "
              "6x: the MFU column counts 6x, as is customary.", ""]
    for r in train["results"]:
        lines.append(f"- {r['contender']}: {r['decoder_params'] / 1e6:.1f}M decoder + {r['head_params'] / 1e6:.2f}M head "
                     f"params -> {r['model_flops_per_token'] / 1e9:.3f} GFLOP/token; {r['achieved_gflops']:.1f} GFLOP/s "
                     f"= **{100 * r['achieved_gflops'] / peak['best_gflops']:.1f}% MFU**")
    prof = o.get("profile")
    if prof:
        lines += ["", "Profile of one training step of ours (torch.profiler, self CPU time, top operators):", ""]
        lines += [markdown_table(["operator", "ms/step", "share", "calls/step"],
                                 [[x["op"], x["ms_per_step"], f"{100 * x['share']:.1f}%", x["calls_per_step"]]
                                  for x in prof]), ""]
    report = "\n".join(lines)
    (out / "report.md").write_text(report + "\n")
    print(report)
    return 0


def _train_table(results, peak):
    from bench_train import table

    return table(results, peak)


if __name__ == "__main__":
    sys.exit(main())
