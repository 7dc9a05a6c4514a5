"""Training throughput and peak memory: ours vs the seed's recipe (TRL SFTTrainer + peft LoRA).

Each contender runs in its own process (peak RSS / peak CUDA memory are per contender) on the same
saved random backbone, the same rows, LoRA settings, micro-batch, accumulation, optimizer and seed:

* ``ours``: ``mathverify.model.module.VerifierModule`` (built with ``configure_model``) fed by the real
  ``mathverify.data.stream.TrainStream`` (length-grouped batches of one shuffle buffer); a plain loop of
  forward -> cross-entropy on the two label logits -> backward -> clip -> AdamW step. No Lightning
  Trainer: its per-step overhead (logging, callbacks) is not what is measured, and the TRL side gets
  no logging either (``logging_steps`` beyond the run).
* ``ours-compiled``: the same with ``model.compile_layers`` (each decoder layer through torch.compile,
  dynamic shapes; compiled during the untimed first step).
* ``trl``: ``trl.SFTTrainer`` with ``peft_config``; text = the seed prompt + label word; loss over the
  whole sequence (``completion_only_loss=False``), no packing, dynamic padding to the longest row of
  each batch, ``adamw_torch``, constant learning rate. ``--trl-micro-batch`` sets its micro-batch
  (the seed's 4) with the accumulation that keeps the same rows per optimizer step.
* ``trl-best``: the same trainer with its own speed options: ``padding_free`` (a micro-batch's rows
  flattened into one sequence, as our ``--packing``), the liger kernels (``use_liger_kernel``; only
  where ``liger_kernel`` imports and on CUDA), the step's rows in one micro-batch, ``--attn``'s kernel.

Timing: examples/s and tokens/s over optimizer steps 2..N (the wall time from the end of step 1 to
the end of step N, data loading included), so one-time start-up costs are left out of both.

    python benchmarks/bench_train.py --quick
    python benchmarks/bench_train.py                      # full: 30 layers, ~400-token rows
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (TARGET_MODULES, apply_mode_defaults, build_backbone, machine, markdown_table, peak_rss_mb,  # noqa: E402
                    read_rows, rss_mb, run_child, seed_text, write_rows)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 steps, 4 layers, short rows (minutes on 2 cores)")
    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--layers", type=int, default=None, help="fewer decoder layers (vocab stays)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (step 1 is not timed)")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--accumulate", type=int, default=2)
    p.add_argument("--length-scale", type=float, default=None, help="repeat solutions ~this many times")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=3407)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    p.add_argument("--gradient-checkpointing", action="store_true", help="both contenders")
    p.add_argument("--shared-prefix-min-tokens", type=int, default=16,
                   help="ours: run a batch's common leading tokens once (0 = off, for the ablation)")
    p.add_argument("--packing", action="store_true", help="ours: packed micro-batches (mathverify.model.packing)")
    p.add_argument("--attn", default="sdpa", help="ours: attention kernel (sdpa, flex_attention, flash_attention_2)")
    p.add_argument("--contenders", default="ours,trl",
                   help="any of ours, ours-compiled (model.compile_layers), trl, trl-best (comma-separated)")
    p.add_argument("--trl-micro-batch", type=int, default=None,
                   help="trl's micro-batch (default --micro-batch), accumulating to the same rows per step")
    p.add_argument("--rounds", type=int, default=1, help="run the contenders alternately this many times, keep each one's best")
    p.add_argument("--matmul-peak-gflops", type=float, default=None, help="for the MFU column")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rows-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help="ours: torch.profiler on one extra, untimed step")
    return apply_mode_defaults(p.parse_args(argv), quick=dict(layers=4, steps=4, length_scale=1.0),
                               full=dict(steps=12, length_scale=3.0))


# ----- helpers shared by the children ---------------------------------------------------------
def _setup(args):
    import torch

    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(torch.get_num_threads())


def _peak_memory_mb(args) -> float:
    import torch

    if args.device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def _count(model, lm_head_rows: int | None) -> dict:
    """Parameters a training step multiplies with: decoder matrices (+ LoRA) and the lm_head rows used."""
    decoder = 0
    trainable = 0
    for name, p in model.named_parameters():
        n = p.numel() * (2 if p.dtype.itemsize == 1 and "weight" in name else 1)  # 4-bit packs 2 per byte
        if p.requires_grad:
            trainable += n
        if "embed_tokens" in name or "lm_head" in name:
            continue
        decoder += n
    cfg = model.config if hasattr(model, "config") else model.get_base_model().config
    head = cfg.hidden_size * (lm_head_rows if lm_head_rows is not None else cfg.vocab_size)
    return {"decoder_params": decoder, "head_params": head, "trainable_params": trainable}


def _sync(args):
    import torch

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def _probe(args) -> float:
    """GEMM GFLOP/s right now: how much of the (shared) machine this contender is getting."""
    from bench_matmul import matmul_peak

    return matmul_peak(2048 if args.device == "cpu" else 8192, args.device,
                       "float32" if args.device == "cpu" else args.dtype, seconds=1.0)["best_gflops"]


def _result(args, name, step_ends, rows_per_step, tokens_per_step, counts, rss_loaded, extra=None):
    timed = step_ends[-1] - step_ends[0]
    n = len(step_ends) - 1
    examples = sum(rows_per_step[1:n + 1])
    tokens = sum(tokens_per_step[1:n + 1])
    involved = counts["decoder_params"] + counts["head_params"]
    flops = 4 * involved + 2 * counts["trainable_params"]  # trainable ones are among the involved
    extra = dict(extra or {})
    computed = extra.pop("computed_per_step", None)
    work = sum(computed[1:n + 1]) if computed else tokens  # token positions actually run through the model
    out = {
        "contender": name, "steps_timed": n, "seconds": timed, "examples": examples, "tokens": tokens,
        "examples_per_s": examples / timed, "tokens_per_s": tokens / timed,
        "seconds_per_step": timed / n, "peak_mem_mb": _peak_memory_mb(args), "rss_after_load_mb": rss_loaded,
        # 4 FLOPs per frozen weight (forward + input gradient) and 6 per trainable one (+ its weight
        # gradient): the work a LoRA step does (6N for all of them overstates it by ~1.5x)
        "model_flops_per_token": flops, "achieved_gflops": flops * work / timed / 1e9,
        "computed_tokens": work,
        **counts, "device": args.device, "dtype": args.dtype, "quantization": args.quantization,
    }
    out.update(extra)
    out["probe_gflops"] = (out.pop("probe_before", 0) + _probe(args)) / 2
    return out


# ----- contender: ours ------------------------------------------------------------------------
def child_ours(args, compiled: bool = False) -> dict:
    import torch
    from torch import nn
    from types import SimpleNamespace

    from mathverify.data.prompt import PromptEncoder
    from mathverify.data.sources import resolve_parts
    from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule
    from mathverify.model.backbone import load_tokenizer
    from mathverify.model.module import VerifierModule
    from mathverify.model.prefix import computed_tokens

    _setup(args)
    module = VerifierModule(
        backbone=args.model_dir, quantization=args.quantization, dtype=args.dtype, max_length=args.max_length,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=TARGET_MODULES, gradient_checkpointing=args.gradient_checkpointing,
        attn_implementation=args.attn, shared_prefix_min_tokens=args.shared_prefix_min_tokens, packing=args.packing,
        compile_layers=compiled,
    )
    # configure_model places the backbone on the Trainer's device; without a Trainer, tell it directly.
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(args.device)))
    module.configure_model()
    module._trainer = None
    module.to(args.device) if args.quantization == "none" else module.head.to(args.device)
    module.train()
    rss_loaded = rss_mb()
    tokenizer = load_tokenizer(args.model_dir)
    encoder = PromptEncoder(tokenizer, module.hparams.prompt_template, "True", "False", args.max_length)
    rows_per_step = args.micro_batch * args.accumulate
    n_rows = rows_per_step * args.steps  # one buffer = exactly the rows TRL trains on
    stream = TrainStream(
        resolve_parts(args.rows_file), encoder, tokenizer.pad_token_id, rank=0, world_size=1,
        validation=ValidationRule(), batch_size=args.micro_batch, buffer_size=n_rows, group_by_length=True,
        seed=args.seed, start=StreamPosition(), num_batches=(args.steps + args.profile) * args.accumulate,
    )
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    counts = _count(module.model, lm_head_rows=2)
    decoder = module.model.get_base_model().get_decoder()  # counts tokens as it runs them (prefix or plain)

    # bf16 on a GPU: autocast, as the shipped GPU configs run (Lightning's precision bf16-mixed) and as
    # TRL runs with bf16=True; without it peft's float32 LoRA weights upcast every projection's input
    # and keep those float32 copies for backward (measured on an H200: +26 % peak memory at 4-bit).
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if args.device.startswith("cuda") and args.dtype == "bfloat16"
           else contextlib.nullcontext())

    def step_fn(batch):
        ids = batch["input_ids"].to(args.device, non_blocking=True)
        with amp:
            logits = module(ids, batch["lengths"].to(args.device), batch["shared_prefix"])
        loss = nn.functional.cross_entropy(logits.float(), batch["labels"].to(args.device)) / args.accumulate
        loss.backward()
        return loss

    prof = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        prof = profile(activities=acts, record_shapes=False)
    step_ends, rows, tokens, computed = [], [], [], []
    it = iter(stream)
    probe_before = _probe(args)
    # With --profile, one extra step after the timed ones runs under torch.profiler (not timed).
    for step in range(args.steps + (prof is not None)):
        if step == args.steps:
            prof.__enter__()
        n, t, c = 0, 0, 0
        for _ in range(args.accumulate):
            batch = next(it)
            step_fn(batch)
            n += int(batch["lengths"].numel())
            t += int(batch["lengths"].sum())
            c += computed_tokens(batch["lengths"], batch["shared_prefix"],
                                 0 if args.packing else args.shared_prefix_min_tokens, decoder)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(args)
        if step == args.steps:
            break
        step_ends.append(time.perf_counter())
        rows.append(n)
        tokens.append(t)
        computed.append(c)
    extra = {"computed_per_step": computed}
    if prof is not None:
        prof.__exit__(None, None, None)
        extra["profile"] = _profile_summary(prof, args, steps=1)
    extra["probe_before"] = probe_before
    extra["options"] = (f"{args.micro_batch} x {args.accumulate}" + (f", packed, {args.attn}" if args.packing else "")
                        + (", compiled layers" if compiled else ""))
    return _result(args, "ours-compiled" if compiled else "ours", step_ends, rows, tokens, counts, rss_loaded, extra)


def _profile_summary(prof, args, steps: int, top: int = 12) -> list[dict]:
    """Top operators by self time (per step), grouped into what they are."""
    cuda = args.device.startswith("cuda")
    events = prof.key_averages()
    total = sum((e.self_device_time_total if cuda else e.self_cpu_time_total) for e in events) or 1
    rows = []
    for e in sorted(events, key=lambda e: -(e.self_device_time_total if cuda else e.self_cpu_time_total))[:top]:
        t = e.self_device_time_total if cuda else e.self_cpu_time_total
        rows.append({"op": e.key, "ms_per_step": t / 1e3 / steps, "share": t / total, "calls_per_step": e.count / steps})
    return rows


# ----- contender: the seed recipe (TRL) -------------------------------------------------------
def child_trl(args, best: bool = False) -> dict:
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from mathverify.model.backbone import quantization_config

    _setup(args)
    dtype = getattr(torch, args.dtype)
    bnb = quantization_config(args.quantization, dtype, None)
    kwargs = dict(dtype=dtype, attn_implementation=args.attn if best else "sdpa")
    if bnb is not None:
        kwargs.update(quantization_config=bnb, device_map={"": torch.device(args.device)})
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, **kwargs)
    if bnb is None:
        model.to(args.device)
    rss_loaded = rss_mb()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    rows_per_step = args.micro_batch * args.accumulate
    micro = rows_per_step if best else (args.trl_micro_batch or args.micro_batch)
    if rows_per_step % micro:
        raise SystemExit(f"--trl-micro-batch {micro} does not divide the {rows_per_step} rows per step")
    accumulate = rows_per_step // micro
    liger = best and args.device != "cpu" and importlib.util.find_spec("liger_kernel") is not None
    rows = read_rows(Path(args.rows_file))[: rows_per_step * args.steps]
    dataset = datasets.Dataset.from_list([{"text": seed_text(r)} for r in rows])
    peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                             target_modules=TARGET_MODULES, task_type="CAUSAL_LM")
    out_dir = tempfile.mkdtemp(prefix="bench-trl-")
    config = SFTConfig(
        output_dir=out_dir, per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulate, max_steps=args.steps, learning_rate=args.lr,
        weight_decay=0.01, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        max_grad_norm=1.0, seed=args.seed, data_seed=args.seed, dataset_text_field="text",
        # padding-free leaves truncation to the caller: every benchmark row is shorter than --max-length
        max_length=None if best else args.max_length, packing=False, padding_free=best, use_liger_kernel=liger,
        completion_only_loss=False, report_to=[],
        logging_steps=10**6, save_strategy="no", eval_strategy="no", disable_tqdm=True,
        use_cpu=args.device == "cpu", bf16=args.dtype == "bfloat16", fp16=False,
        dataloader_num_workers=0, gradient_checkpointing=args.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if args.gradient_checkpointing else None,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    # Real tokens per micro-batch, counted where the batches are made.
    collate, batch_tokens, batch_rows = trainer.data_collator, [], []

    def counting_collator(examples):
        batch = collate(examples)
        mask = batch.get("attention_mask")  # none when padding-free: every position is a real token
        real = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        batch_tokens.append(real)
        batch_rows.append(len(examples))
        return batch

    trainer.data_collator = counting_collator
    step_ends = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            _sync(args)
            step_ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    counts = _count(trainer.model, lm_head_rows=None)
    probe_before = _probe(args)
    trainer.train()
    acc = accumulate
    rows_s = [sum(batch_rows[i * acc:(i + 1) * acc]) for i in range(len(step_ends))]
    toks_s = [sum(batch_tokens[i * acc:(i + 1) * acc]) for i in range(len(step_ends))]
    options = f"{micro} x {accumulate}" + (f", padding-free, {args.attn}, liger {'on' if liger else 'off'}" if best else "")
    return _result(args, "trl-best" if best else "trl", step_ends, rows_s, toks_s, counts, rss_loaded,
                   {"probe_before": probe_before, "options": options})


# ----- parent ---------------------------------------------------------------------------------
def child_args(args, name: str, model_dir: Path, rows_file: Path) -> list[str]:
    out = ["--child", name, "--model-dir", str(model_dir), "--rows-file", str(rows_file),
           "--steps", str(args.steps), "--micro-batch", str(args.micro_batch), "--accumulate", str(args.accumulate),
           "--max-length", str(args.max_length), "--lora-r", str(args.lora_r), "--lora-alpha", str(args.lora_alpha),
           "--lora-dropout", str(args.lora_dropout), "--lr", str(args.lr), "--seed", str(args.seed),
           "--device", args.device, "--dtype", args.dtype, "--quantization", args.quantization,
           "--length-scale", str(args.length_scale),
           "--shared-prefix-min-tokens", str(args.shared_prefix_min_tokens), "--attn", args.attn]
    if args.trl_micro_batch:
        out += ["--trl-micro-batch", str(args.trl_micro_batch)]
    if args.packing:
        out.append("--packing")
    if args.gradient_checkpointing:
        out.append("--gradient-checkpointing")
    if args.profile and name.startswith("ours"):
        out.append("--profile")
    return out


def table(results: list[dict], peak_gflops: float | None = None) -> str:
    header = ["contender", "examples/s", "tokens/s", "s/step", "peak mem MB", "mem after load MB", "GFLOP/s",
              "MFU", "GEMM probe GFLOP/s"]
    rows = []
    # The GEMM peak: the best rate seen, by the dedicated measurement or any contender's probe.
    peak_gflops = max([peak_gflops or 0] + [r.get("probe_gflops") or 0 for r in results]) or None
    for r in results:
        mfu = f"{100 * r['achieved_gflops'] / peak_gflops:.1f}%" if peak_gflops else "-"
        name = f"{r['contender']} ({r['options']})" if r.get("options") else r["contender"]
        rows.append([name, r["examples_per_s"], r["tokens_per_s"], r["seconds_per_step"], r["peak_mem_mb"],
                     r["rss_after_load_mb"], r["achieved_gflops"], mfu, r.get("probe_gflops")])
    by = {r["contender"]: r for r in results}
    for mine, peer in [(m, p) for m in ("ours", "ours-compiled") for p in ("trl", "trl-best")]:
        if mine not in by or peer not in by:
            continue
        o, t = by[mine], by[peer]
        rows.append([f"ratio {mine}/{peer}", o["examples_per_s"] / t["examples_per_s"], o["tokens_per_s"] / t["tokens_per_s"],
                     o["seconds_per_step"] / t["seconds_per_step"], o["peak_mem_mb"] / t["peak_mem_mb"],
                     o["rss_after_load_mb"] / t["rss_after_load_mb"], "-", "-",
                     o["probe_gflops"] / t["probe_gflops"] if t.get("probe_gflops") else "-"])
        if o.get("probe_gflops") and t.get("probe_gflops"):
            norm = (o["examples_per_s"] / o["probe_gflops"]) / (t["examples_per_s"] / t["probe_gflops"])
            rows.append([f"ratio {mine}/{peer} examples/s, each per its GEMM probe", norm, "-", "-", "-", "-", "-", "-", "-"])
    return markdown_table(header, rows)


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        result = {"ours": child_ours, "ours-compiled": partial(child_ours, compiled=True), "trl": child_trl,
                  "trl-best": partial(child_trl, best=True)}[args.child](args)
        print(json.dumps(result))
        return 0
    model_dir = build_backbone(args.shape, args.layers, device=args.device,
                               dtype=args.dtype if args.quantization == "none" else "bfloat16")
    rows_file = write_rows(args.micro_batch * args.accumulate * args.steps, seed=7, length_scale=args.length_scale)
    # --rounds N: the contenders run alternately N times (ours, trl, ours, trl, ...) and each keeps
    # its fastest run, so a burst of load from other processes does not decide the ratio.
    best: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name in args.contenders.split(","):
            print(f"[bench_train] {name} (round {round_ + 1}/{args.rounds}) ...", file=sys.stderr, flush=True)
            r = run_child(Path(__file__), child_args(args, name, model_dir, rows_file))
            r["all_examples_per_s"] = best.get(name, {}).get("all_examples_per_s", []) + [r["examples_per_s"]]
            if name not in best or r["examples_per_s"] > best[name]["examples_per_s"]:
                best[name] = r
            else:
                best[name]["all_examples_per_s"] = r["all_examples_per_s"]
            print(f"[bench_train] {name}: {r['examples_per_s']:.3f} examples/s", file=sys.stderr, flush=True)
    results = [best[name] for name in args.contenders.split(",")]
    setup = (f"shape {args.shape}, layers {args.layers or 'all'}, micro-batch {args.micro_batch} x accumulate "
             f"{args.accumulate}, {args.steps} steps (first untimed), best of {args.rounds} alternating round(s), length-scale {args.length_scale:g}, "
             f"LoRA r={args.lora_r} alpha={args.lora_alpha:g} dropout={args.lora_dropout:g} on 7 projections, "
             f"{args.dtype}, quantization {args.quantization}, device {args.device}; {machine()}")
    print(setup)
    print(table(results, args.matmul_peak_gflops))
    if args.json:
        Path(args.json).write_text(json.dumps({"setup": setup, "results": results, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
