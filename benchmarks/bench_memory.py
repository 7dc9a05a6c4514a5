"""Where a training step's memory goes, for a shipped config: weights, LoRA, optimizer, activations.

    python benchmarks/bench_memory.py --config configs/llama3-8b-qlora-t4.yaml             # CPU: counted, extrapolated
    python benchmarks/bench_memory.py --config configs/llama3-8b-qlora-t4.yaml --device cuda --cap-gib 14.5

CPU (no GPU needed): the module is built as the config says (quantization, dtype, LoRA, checkpointing)
on Llama-3-8B-wide models of 1 and 2 layers with a small vocabulary. Weight, LoRA and vocabulary-row
bytes are read off the built parameters; the bytes a forward keeps for the backward are counted with
``mathverify.model.memory.SavedActivations`` (under autocast in the config's 16-bit dtype) at two row
lengths, which separates per-layer from per-model and per-token from fixed costs. All of it is then
scaled to 32 layers, the 128,256-token vocabulary and the config's micro-batch of ``--tokens``-token
rows. The backward's extra (one layer recomputed, the dequantized weight) is an estimate, marked so.

CUDA: the same model at full depth (random weights, saved once), the allocator optionally capped
(``--cap-gib``: a T4 leaves ~14.5 GiB), a few real training steps (forward, backward, optimizer) on
rows of exactly ``--tokens`` tokens; ``torch.cuda`` memory read after each phase. Prints both tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAPES, build_backbone, markdown_table  # noqa: E402

GIB = 2**30
SHAPES.setdefault("llama3-8b-width", dict(SHAPES["llama3-8b"], vocab_size=1024))  # the CPU counts' models
MODEL_KEYS = ("quantization", "dtype", "quant_storage", "lora_r", "lora_alpha", "lora_dropout", "use_rslora",
              "lora_bias", "target_modules", "gradient_checkpointing", "max_length", "head")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a shipped config (its model, rounds and optimizer are used)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per row (default: the config's max_length)")
    p.add_argument("--micro-batch", type=int, default=None, help="rows per micro-batch (default: the config's first round)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", type=int, default=32, help="CUDA: decoder layers built (32 = Llama-3-8B)")
    p.add_argument("--steps", type=int, default=3, help="CUDA: training steps measured")
    p.add_argument("--cap-gib", type=float, default=None, help="CUDA: cap PyTorch's allocator (a T4: 14.5)")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def read_config(path: str) -> dict:
    """The settings that decide memory: model keys, micro-batch, precision, optimizer class."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    model = config.get("model", {})
    rounds = next((c["init_args"]["rounds"] for c in config.get("trainer", {}).get("callbacks", [])
                   if isinstance(c, dict) and c.get("class_path", "").endswith("StepRounds")), [{}])
    micro = int(rounds[0].get("batch_size", config.get("data", {}).get("batch_size", 8)))
    optimizer = (model.get("optimizer") or {}).get("class_path", "torch.optim.AdamW")
    return {"model": {k: model[k] for k in MODEL_KEYS if k in model}, "micro_batch": micro,
            "precision": str(config.get("trainer", {}).get("precision", "32-true")), "optimizer": optimizer}


def optimizer_bytes_per_param(name: str) -> float:
    """Adam's two moments: 8-bit (bitsandbytes, blockwise with a float32 absmax per 256) or float32."""
    return 2 * (1 + 4 / 256) if "8bit" in name.lower() else 8.0


def weight_bytes(param) -> int:
    """A parameter's bytes, bitsandbytes' quantization state included (absmax, nested absmax, row scales)."""
    total = param.untyped_storage().nbytes()
    state = getattr(param, "quant_state", None)
    if state is not None:
        total += state.absmax.nbytes + (state.code.nbytes if state.code is not None else 0)
        if getattr(state, "state2", None) is not None:
            total += state.state2.absmax.nbytes + state.state2.code.nbytes
    scb = getattr(param, "SCB", None)
    return total + (scb.nbytes if scb is not None else 0)


def account(module) -> dict:
    """Bytes by kind, per decoder layer (``layers.0``) and per vocabulary row, from the built module."""
    out = {"layer_frozen": 0, "layer_lora": 0, "layer_lora_params": 0, "vocab_row": 0, "other": 0}
    base = module.model.get_base_model()
    vocab = base.get_input_embeddings().weight.shape[0]
    dtypes = {}
    for name, param in module.named_parameters():
        size = weight_bytes(param)
        if ".layers.0." in name:
            key = "layer_lora" if param.requires_grad else "layer_frozen"
            out[key] += size
            out["layer_lora_params"] += param.numel() if param.requires_grad else 0
        elif ".layers." in name:
            continue
        elif "embed_tokens" in name or "lm_head" in name:
            out["vocab_row"] += size / vocab
            dtypes["embed_tokens" if "embed_tokens" in name else "lm_head"] = str(param.dtype).replace("torch.", "")
        else:
            out["other"] += size
    out["dtypes"] = dtypes
    return out


def count_saved(module, tokens: int, rows: int, dtype: str) -> int:
    """Bytes one training forward keeps for its backward (no backward is run)."""
    import torch

    from mathverify.model.memory import SavedActivations, module_tensors

    device = next(module.parameters()).device
    ids = torch.randint(10, 800, (rows, tokens), device=device)
    lengths = torch.full((rows,), tokens, device=device)
    counter = SavedActivations(module_tensors(module) + [ids, lengths])
    half = dtype != "float32"
    with counter, torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=half):
        margin, _ = module.margins(ids, lengths, shared_prefix=0)  # the plain pass: every token computed
    saved = counter.live_bytes()
    del margin
    return saved


def build_module(folder: str, settings: dict, checkpointing: bool, device: str):
    import torch

    from mathverify.model.module import VerifierModule

    module = VerifierModule(backbone=folder, **{**settings, "gradient_checkpointing": checkpointing})
    module.build(torch.device(device))
    return module.train()


def counts_by_depth(cfg: dict, device: str = "cpu", tokens_probe=(32, 96), rows: int = 2) -> dict:
    """Counts on 1- and 2-layer models: live(L, T) = L (a T + b) + (c T + d), solved from 4 points."""
    settings = {k: v for k, v in cfg["model"].items() if k != "gradient_checkpointing"}
    dtype = settings.get("dtype", "float32")
    result = {}
    for checkpointing in (True, False):
        live = {}
        for layers in (1, 2):
            folder = str(build_backbone("llama3-8b-width", layers, dtype="float32"))
            module = build_module(folder, settings, checkpointing, device)
            if checkpointing and layers == 1:
                result["weights"] = account(module)
            for tokens in tokens_probe:
                live[layers, tokens] = count_saved(module, tokens, rows, dtype)
            del module
        t1, t2 = tokens_probe
        per_layer = {t: live[2, t] - live[1, t] for t in tokens_probe}
        rest = {t: live[1, t] - per_layer[t] for t in tokens_probe}
        a = (per_layer[t2] - per_layer[t1]) / (rows * (t2 - t1))  # bytes per token and layer
        c = (rest[t2] - rest[t1]) / (rows * (t2 - t1))  # bytes per token outside the layers
        result["ckpt" if checkpointing else "plain"] = {
            "per_token_layer": a, "per_layer": per_layer[t1] - a * rows * t1,
            "per_token": c, "fixed": rest[t1] - c * rows * t1}
        print(f"[bench_memory] checkpointing {checkpointing}: {a:.0f} B per token and layer, {c:.0f} B per token outside",
              file=sys.stderr, flush=True)
    return result


def predict_peak(cfg: dict, counts: dict, tokens: int, micro: int, layers: int = 32, vocab: int = 128256,
                 hidden: int = 4096, intermediate: int = 14336) -> list[tuple[str, float, str]]:
    """(what, GiB, how known) rows of a training step's peak at full size, from the CPU counts."""
    w = counts["weights"]
    lora_params = w["layer_lora_params"] * layers
    checkpointing = bool(cfg["model"].get("gradient_checkpointing", False))
    kept = counts["ckpt" if checkpointing else "plain"]
    plain = counts["plain"]
    n = tokens * micro
    half = 2 if cfg["model"].get("dtype", "float32") != "float32" else 4
    rows = [
        (f"decoder weights ({cfg['model'].get('quantization', 'none')}, frozen)", w["layer_frozen"] * layers, "counted"),
        (f"embed_tokens + lm_head ({w['dtypes'].get('embed_tokens')}, {w['dtypes'].get('lm_head')})",
         w["vocab_row"] * vocab, "counted"),
        (f"LoRA weights ({lora_params / 1e6:.1f} M, fp32)", w["layer_lora"] * layers, "counted"),
        ("LoRA gradients (fp32)", 4 * lora_params, "counted"),
        (f"optimizer states ({cfg['optimizer'].rsplit('.', 1)[-1]})",
         optimizer_bytes_per_param(cfg["optimizer"]) * lora_params, "counted"),
        (f"activations kept for backward ({'checkpointed' if checkpointing else 'every tensor'}, {micro} x {tokens} tokens)",
         layers * (kept["per_token_layer"] * n + kept["per_layer"]) + kept["per_token"] * n + kept["fixed"], "counted"),
    ]
    if checkpointing:
        rows.append(("one layer recomputed in the backward", plain["per_token_layer"] * n + plain["per_layer"],
                     "counted"))
    rows.append(("gradients in flight + dequantized weight (largest, fwd and bwd)",
                 3 * n * hidden * half + 2 * hidden * intermediate * half, "estimate"))
    return [(what, size / GIB, how) for what, size, how in rows]


def cuda_measure(cfg: dict, tokens: int, micro: int, args) -> dict:
    """Real steps at full depth on the GPU; memory read after loading, forward, backward and the step."""
    import torch

    from mathverify.model.memory import SavedActivations, module_tensors

    dtype = cfg["model"].get("dtype", "bfloat16")
    folder = str(build_backbone("llama3-8b", args.layers, device="cuda", dtype="bfloat16"))  # saved once, shared with gpu.sh
    torch.cuda.empty_cache()
    if args.cap_gib:  # after building the folder (16 GB on the device while it is written)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * GIB / total))
    torch.cuda.reset_peak_memory_stats()
    module = build_module(folder, cfg["model"], bool(cfg["model"].get("gradient_checkpointing")), "cuda")
    out = {"loaded": torch.cuda.memory_allocated() / GIB}
    import importlib

    path, _, name = cfg["optimizer"].rpartition(".")
    optimizer = getattr(importlib.import_module(path), name)([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(10, 800, (micro, tokens), device="cuda")
    lengths = torch.full((micro,), tokens, device="cuda")
    labels = torch.tensor([i % 2 for i in range(micro)], device="cuda")
    half = dtype != "float32"
    start = time.perf_counter()
    for step in range(args.steps):
        torch.cuda.reset_peak_memory_stats()
        counter = SavedActivations(module_tensors(module) + [ids, lengths]) if step == 0 else None
        with torch.autocast("cuda", dtype=getattr(torch, dtype), enabled=half):
            if counter is not None:
                counter.start()
            margin, shift = module.margins(ids, lengths, shared_prefix=0)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(margin + shift, labels.float())
            if counter is not None:
                counter.stop()
                out["kept_counted"] = counter.live_bytes() / GIB
        out["after_forward"] = torch.cuda.memory_allocated() / GIB
        loss.backward()
        out["peak_backward"] = torch.cuda.max_memory_allocated() / GIB
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out["after_step"] = torch.cuda.memory_allocated() / GIB
        out["peak_step"] = torch.cuda.max_memory_allocated() / GIB
    torch.cuda.synchronize()
    out["seconds_per_micro_batch"] = (time.perf_counter() - start) / args.steps
    out["reserved"] = torch.cuda.max_memory_reserved() / GIB
    return out


def main(argv=None) -> int:
    args = parse(argv)
    cfg = read_config(args.config)
    tokens = args.tokens or int(cfg["model"].get("max_length", 1024))
    micro = args.micro_batch or cfg["micro_batch"]
    result = {"config": args.config, "tokens": tokens, "micro_batch": micro, "settings": cfg}
    counts = counts_by_depth(cfg, "cuda" if args.device.startswith("cuda") else "cpu")
    result["counts"] = counts
    rows = predict_peak(cfg, counts, tokens, micro)
    total = sum(size for _, size, _ in rows)
    print(f"## {args.config}: one training micro-batch of {micro} x {tokens} tokens, Llama-3-8B shape\n")
    print(markdown_table(["where", "GiB", "how known"], [[w, f"{s:.2f}", h] for w, s, h in rows]
                         + [["**predicted peak allocated by torch**", f"**{total:.2f}**", "sum"]]))
    result["predicted_gib"] = total
    if args.device.startswith("cuda"):
        measured = cuda_measure(cfg, tokens, micro, args)
        result["measured"] = measured
        print(f"\nmeasured on {__import__('torch').cuda.get_device_name(0)} ({args.layers} layers"
              + (f", allocator capped at {args.cap_gib} GiB" if args.cap_gib else "") + "):\n")
        print(markdown_table(["phase", "GiB"], [[k, f"{v:.2f}"] for k, v in measured.items()]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
