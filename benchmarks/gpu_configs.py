"""Every shipped GPU config through the real CLI on contest-length rows, and a kill -9 resume on CUDA.

    python benchmarks/gpu_configs.py --out $OUT                     # on the GPU machine (see gpu.sh for the wheels)
    python benchmarks/gpu_configs.py --out /tmp/smoke --cpu-smoke   # here: the same code path, toy shape, CPU

For each config (in this order, so a run cut short keeps the most useful rows): the config's own
model, optimizer, precision and first round's micro-batch x accumulation, for ``--steps`` optimizer
steps, on synthetic rows long enough to fill its ``max_length`` (rows are cut there, as long contest
rows are), with a Llama-3-8B-shaped random backbone; then ``predict`` from its last checkpoint.
The T4 config runs with PyTorch's allocator capped at 14.5 GiB (``gpu_probe.CapDeviceMemory``): a
T4 has 15 GB. Memory and speed come from ``gpu_probe.PeakMemory`` (torch's own counters; rows and real tokens
per second after the first quarter of the training batches). Last, ``--resume``: a 4-layer model of the same width
is trained 6 steps uninterrupted, and again killed with SIGKILL after step 3 and resumed from the
step-2 checkpoint; the two adapters are compared (dropout on: CUDA's generator must be restored).
One table goes to stdout and ``$OUT/gpu_configs.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import build_backbone, markdown_table, write_rows  # noqa: E402

CONFIGS = {  # name: (config file, allocator cap in GiB or None, solution repeats to fill max_length)
    "t4": ("configs/llama3-8b-qlora-t4.yaml", 14.5, 6.0),
    "qlora": ("configs/llama3-8b-qlora.yaml", None, 12.0),
    "8bit": ("configs/llama3-8b-8bit.yaml", None, 12.0),
    "lora16": ("configs/llama3-8b-lora16.yaml", None, 12.0),
}
SAME_START = {"num_sanity_val_steps": 0}  # the resume check: nothing runs between restoring and training
DISTRIBUTED = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default="t4,qlora,8bit,lora16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--cpu-smoke", action="store_true", help="toy shape on CPU, fp32, 2 steps: the code path only")
    p.add_argument("--timeout", type=int, default=420, help="seconds per CLI command")
    return p.parse_args(argv)


def overlay(config: str, *, backbone: str, rows: Path, out: Path, name: str, steps: int, cap, smoke: bool,
            extra_callbacks: list | None = None, every_n_train_steps: int = 0, trainer: dict | None = None) -> Path:
    """The shipped config with the check's changes: backbone, rows, steps, probes (written to a new YAML)."""
    cfg = yaml.safe_load((ROOT / config).read_text())
    callbacks = []
    for callback in cfg["trainer"]["callbacks"]:
        callback = dict(callback)
        if callback["class_path"].endswith("StepRounds"):
            first = dict(callback["init_args"]["rounds"][0], steps=steps)
            first.pop("lr", None)
            callback["init_args"] = {"rounds": [first], "stop_after_each_round": False}
        if callback["class_path"].endswith("RoundCheckpoint") and every_n_train_steps:
            callback["init_args"] = dict(callback.get("init_args") or {}, every_n_train_steps=every_n_train_steps)
        callbacks.append(callback)
    callbacks.append({"class_path": "gpu_probe.PeakMemory", "init_args": {"path": str(out / f"{name}-{{stage}}.json")}})
    if cap:
        callbacks.append({"class_path": "gpu_probe.CapDeviceMemory", "init_args": {"gib": cap}})
    cfg["trainer"]["callbacks"] = callbacks + (extra_callbacks or [])
    cfg["trainer"].update(log_every_n_steps=1, **(trainer or {}))
    cfg["run_name"] = f"gpu-{name}"
    cfg["model"]["backbone"] = backbone
    cfg["data"].update(train_files=str(rows), val_size=48, val_scan_rows=2000)
    if smoke:
        cfg["trainer"].update(accelerator="cpu", precision="32-true")
        cfg["model"].update(dtype="float32", max_length=256)
        cfg["model"].pop("quant_storage", None)
        cfg["data"].update(num_workers=0, val_size=16, eval_batch_size=8)
    path = out / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli(args: list[str], log: Path, timeout: int) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    with open(log, "w") as handle:
        try:
            code = subprocess.run([sys.executable, "-m", "mathverify", *args], stdout=handle, stderr=subprocess.STDOUT,
                                  cwd=ROOT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - start


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def check_config(name: str, args, backbone: str, out: Path, logs: Path) -> list:
    config, cap, scale = CONFIGS[name]
    rows = write_rows(400 if args.cpu_smoke else 1500, seed=0, length_scale=1.0 if args.cpu_smoke else scale)
    test_rows = write_rows(32 if args.cpu_smoke else 96, seed=7, length_scale=1.0 if args.cpu_smoke else scale)
    steps = 2 if args.cpu_smoke else args.steps
    path = overlay(config, backbone=backbone, rows=rows, out=out, name=name, steps=steps, cap=cap, smoke=args.cpu_smoke)
    common = ["--config", str(path), "--logs_dir", str(logs)]
    print(f"[gpu_configs] {name}: fit ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    fit_rc, fit_s = cli(["fit", *common], out / f"{name}-fit.log", args.timeout)
    pred_rc, pred_s = cli(["predict", *common, "--ckpt_path", f"gpu-{name}:last", "--data.predict_files", str(test_rows),
                           "--submission", str(out / f"{name}-submission.csv"), "--overwrite", "true"],
                          out / f"{name}-predict.log", args.timeout)
    fit, pred = read_json(out / f"{name}-fit.json"), read_json(out / f"{name}-predict.json")
    cfg = yaml.safe_load(path.read_text())
    first = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("StepRounds"))["init_args"]["rounds"][0]
    shape = f"{first.get('batch_size', cfg['data'].get('batch_size'))} x {first.get('accumulate', 1)}, {cfg['model']['max_length']}"
    gib = lambda record, key: f"{record[key]:.2f}" if record.get(key) is not None else "-"  # noqa: E731
    return [name + (f" (cap {cap} GiB)" if cap else ""), shape, steps, fit_rc, gib(fit, "peak_allocated_gib"),
            gib(fit, "peak_reserved_gib"), fit.get("rows_s"), fit.get("tokens_s"), f"{fit_s:.0f}", pred_rc,
            gib(pred, "peak_allocated_gib"), f"{pred_s:.0f}"]


def check_resume(args, out: Path) -> list:
    """Uninterrupted vs killed-and-resumed, same settings; the largest adapter difference."""
    import torch

    layers = None if args.cpu_smoke else 4
    backbone = str(build_backbone("tiny-8b-vocab" if args.cpu_smoke else "llama3-8b", layers,
                                  device="cpu" if args.cpu_smoke else "cuda", dtype="float32" if args.cpu_smoke else "bfloat16"))
    rows = write_rows(400, seed=1, length_scale=1.0 if args.cpu_smoke else 3.0)
    results = {}
    for run, kill in (("resume-a", False), ("resume-b", True)):
        logs = out / "resume-logs"
        extra = [{"class_path": "resume_helpers.KillAtStep", "init_args": {"step": 3}}] if kill else []
        path = overlay("configs/llama3-8b-qlora.yaml", backbone=backbone, rows=rows, out=out, name=run, steps=6, cap=None,
                       smoke=args.cpu_smoke, extra_callbacks=extra, every_n_train_steps=2, trainer=SAME_START)
        code, _ = cli(["fit", "--config", str(path), "--logs_dir", str(logs)], out / f"{run}.log", args.timeout)
        results[run] = code
        if kill:  # resumed from the step-2 checkpoint, without the kill
            path = overlay("configs/llama3-8b-qlora.yaml", backbone=backbone, rows=rows, out=out, name=run, steps=6,
                           cap=None, smoke=args.cpu_smoke, every_n_train_steps=2, trainer=SAME_START)
            code, _ = cli(["fit", "--config", str(path), "--logs_dir", str(logs), "--ckpt_path", "last"],
                          out / f"{run}-resumed.log", args.timeout)
            results[run + "-resumed"] = code
    load = lambda run: torch.load(out / "resume-logs" / f"gpu-{run}" / "version_0" / "checkpoints" / "last.ckpt",  # noqa: E731
                                  weights_only=True, map_location="cpu")["state_dict"]
    try:
        a, b = load("resume-a"), load("resume-b")
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a) if a.keys() == b.keys() else float("inf")
    except (OSError, RuntimeError, KeyError) as err:
        diff = f"unreadable ({type(err).__name__})"
    return [f"kill -9 after step 3, resume from step 2 ({'toy' if args.cpu_smoke else '4 layers'}, qlora config)",
            f"rc {results}", f"max |adapter difference| {diff}"]


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    backbone = str(build_backbone("tiny-8b-vocab", None, device="cpu", dtype="float32") if args.cpu_smoke
                   else build_backbone("llama3-8b", None, device="cuda", dtype="bfloat16"))
    if not args.cpu_smoke:
        import torch

        torch.cuda.empty_cache()
    header = ["config", "micro-batch x accumulate, max_length", "steps", "fit rc", "fit peak allocated GiB",
              "peak reserved GiB", "rows/s", "tokens/s", "fit wall s", "predict rc", "predict peak GiB", "predict wall s"]
    table = [check_config(name, args, backbone, out, logs) for name in args.configs.split(",") if name]
    report = markdown_table(header, table)
    if args.resume:
        report += "\n\n" + " | ".join(map(str, check_resume(args, out)))
    device = "CPU smoke (toy shape)" if args.cpu_smoke else __import__("torch").cuda.get_device_name(0)
    report = f"# shipped GPU configs through the CLI, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {device}\n\n{report}\n"
    (out / "gpu_configs.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
