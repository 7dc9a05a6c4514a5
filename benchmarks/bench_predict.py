"""Prediction throughput: ours (label-token head) vs the seed's generate-and-compare, same model and rows.

* ``ours``: rows tokenized by ``mathverify.data.prompt.PromptEncoder``, sorted longest first and cut into
  batches as ``mathverify predict`` cuts them (``mathverify.data.eval_batches``: a fixed number of rows,
  or ``auto``), right-padded; one forward per batch through ``VerifierModule`` (decoder + two
  ``lm_head`` rows at the last real position).
* ``seed``: the seed prompt (no label), rows in file order, batches of 30, left padding,
  ``generate(max_new_tokens=2, do_sample=False)``, decode the new tokens, compare the text with
  "true"/"false" (a fine-tuned model stops after the label and EOS: 2 new tokens is its cheapest case).
* ``unpadded``: one forward per row over exactly its real tokens (batch 1, no padding at all);
  the sum of those times is the "no padding" reference for our pass.

Both contenders use the same LoRA-wrapped model (``VerifierModule.model``) in one process, in
inference mode; tokenization and decoding are inside the timed region of each.

    python benchmarks/bench_predict.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (TARGET_MODULES, apply_mode_defaults, build_backbone, machine, markdown_table,  # noqa: E402
                    read_rows, write_rows)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--batch-size", default="30,auto",
                   help="ours, comma-separated rows per batch or auto (predict's default: sized to the free GPU "
                        "memory, 16 rows on a CPU): each is timed, the fastest is compared (the seed's is 30)")
    p.add_argument("--seed-batch-size", type=int, default=30)
    p.add_argument("--length-scale", type=float, default=None)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--unpadded-rows", type=int, default=None, help="rows timed one by one (default all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    p.add_argument("--json", default=None)
    return apply_mode_defaults(p.parse_args(argv), quick=dict(layers=4, rows=60, length_scale=1.0),
                               full=dict(rows=300, length_scale=3.0))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> int:
    import torch

    from mathverify.data.eval_batches import EvalBatches, plan_for
    from mathverify.data.examples import padding_fraction
    from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder
    from mathverify.model.backbone import load_tokenizer
    from mathverify.model.module import VerifierModule

    args = parse(argv)
    model_dir = build_backbone(args.shape, args.layers, device=args.device,
                               dtype=args.dtype if args.quantization == "none" else "bfloat16")
    rows = read_rows(write_rows(args.rows, seed=11, length_scale=args.length_scale))
    torch.manual_seed(0)
    module = VerifierModule(backbone=str(model_dir), quantization=args.quantization, dtype=args.dtype,
                            max_length=args.max_length, target_modules=TARGET_MODULES)
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(args.device)))
    module.configure_model()
    module._trainer = None
    module.to(args.device) if args.quantization == "none" else module.head.to(args.device)
    module.eval()
    tokenizer = load_tokenizer(str(model_dir))
    encoder = PromptEncoder(tokenizer, SEED_TEMPLATE, "True", "False", args.max_length)
    dev = args.device
    sizes = [x if x == "auto" else int(x) for x in str(args.batch_size).split(",")]

    def ours_pass(batch_size):
        ids, _ = encoder.encode(rows)
        examples = sorted(({"input_ids": row, "row_index": i} for i, row in enumerate(ids)),
                          key=lambda e: len(e["input_ids"]), reverse=True)
        plan = plan_for(batch_size, module.model, torch.device(dev))
        probs = [None] * len(ids)
        batches = []
        for batch in EvalBatches(examples, plan, tokenizer.pad_token_id):
            batches.append(batch)
            logits = module(batch["input_ids"].to(dev), batch["lengths"].to(dev), batch["shared_prefix"])
            for i, p in zip(batch["row_index"].tolist(), logits.softmax(-1)[:, 1].tolist()):
                probs[i] = p
        return probs, batches, ids

    seed_model = module.model  # the same LoRA-wrapped causal LM

    def seed_pass():
        tokenizer.padding_side = "left"
        preds, widths, real = [], 0, 0
        for s in range(0, len(rows), args.seed_batch_size):
            chunk = rows[s:s + args.seed_batch_size]
            enc = tokenizer([SEED_TEMPLATE.format(**r) for r in chunk], return_tensors="pt", padding=True,
                            truncation=True, max_length=args.max_length).to(dev)
            widths += enc["input_ids"].numel()
            real += int(enc["attention_mask"].sum())
            out = seed_model.generate(**enc, max_new_tokens=2, do_sample=False, use_cache=True,
                                      pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            preds += [t.strip().lower().startswith("true") for t in texts]
        tokenizer.padding_side = "right"
        return preds, 1 - real / widths

    def unpadded_pass(ids):
        total = 0.0
        for row in ids:
            x = torch.tensor([row], device=dev)
            sync(dev)
            t0 = time.perf_counter()
            module(x, torch.tensor([len(row)], device=dev))
            sync(dev)
            total += time.perf_counter() - t0
        return total

    with torch.inference_mode():
        # warm-up of both paths on a few rows (allocator, kernels, generate's set-up), not timed
        all_rows, rows[:] = list(rows), rows[:4]
        ours_pass(4)
        seed_pass()
        rows[:] = all_rows
        by_batch = {}
        for size in sizes:
            sync(dev)
            t0 = time.perf_counter()
            probs, batches, ids = ours_pass(size)
            sync(dev)
            shapes = [int(b["input_ids"].shape[0]) for b in batches]
            by_batch[size] = {"s": time.perf_counter() - t0, "padding": padding_fraction(batches),
                              "rows_per_batch": f"{min(shapes)}-{max(shapes)}" if min(shapes) != max(shapes) else str(shapes[0])}
        best = min(by_batch, key=lambda k: by_batch[k]["s"])
        t_ours = by_batch[best]["s"]
        t0 = time.perf_counter()
        preds, seed_pad = seed_pass()
        sync(dev)
        t_seed = time.perf_counter() - t0
        n_unpadded = min(len(ids), args.unpadded_rows or len(ids))
        t_unpadded = unpadded_pass(ids[:n_unpadded]) * len(ids) / n_unpadded
    real_tokens = sum(len(i) for i in ids)
    results = {
        "rows": len(rows), "real_tokens": real_tokens,
        "ours_s": t_ours, "seed_s": t_seed, "unpadded_forward_s": t_unpadded, "unpadded_rows_timed": n_unpadded,
        "ours_rows_per_s": len(rows) / t_ours, "seed_rows_per_s": len(rows) / t_seed,
        "ours_tokens_per_s": real_tokens / t_ours, "unpadded_tokens_per_s": real_tokens / t_unpadded,
        "ratio_ours_seed": t_seed / t_ours, "ours_vs_unpadded": t_unpadded / t_ours,
        "ours_padding": by_batch[best]["padding"], "seed_padding": seed_pad, "ours_batch_size": best,
        "ours_by_batch": {str(k): {"rows_per_s": len(rows) / v["s"], "seconds": v["s"], "padding": v["padding"],
                                   "rows_per_batch": v["rows_per_batch"],
                                   "tokens_per_s": real_tokens / v["s"]} for k, v in by_batch.items()},
        "seed_true_share": sum(preds) / len(preds),
    }
    setup = (f"shape {args.shape}, layers {args.layers or 'all'}, {len(rows)} rows, length-scale "
             f"{args.length_scale:g}, ours batches of {args.batch_size} (length-sorted), seed batch "
             f"{args.seed_batch_size} (file order, left pad, generate max_new_tokens=2), {args.dtype}, "
             f"device {args.device}; {machine()}")
    print(setup)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"setup": setup, "results": results, "args": vars(args)}, indent=1))
    return 0


def table(r: dict) -> str:
    header = ["predict", "rows/s", "real tokens/s", "seconds", "padding"]
    rows = [
        *[[f"ours, batches of {k} ({v['rows_per_batch']} rows; label-token head, length-sorted, shared prefix)", v["rows_per_s"],
           v["tokens_per_s"], v["seconds"], f"{100 * v['padding']:.1f}%"] for k, v in r["ours_by_batch"].items()],
        ["seed (generate, 2 new tokens, batches of 30)", r["seed_rows_per_s"], r["real_tokens"] / r["seed_s"],
         r["seed_s"], f"{100 * r['seed_padding']:.1f}%"],
        ["one forward per row, real tokens only", r["rows"] / r["unpadded_forward_s"], r["unpadded_tokens_per_s"],
         r["unpadded_forward_s"], "0.0%"],
        [f"ratio ours (batches of {r['ours_batch_size']})/seed (rows/s)", r["ratio_ours_seed"], "-", "-", "-"],
        [f"ratio ours (batches of {r['ours_batch_size']})/unpadded (rows/s)", r["ours_vs_unpadded"], "-", "-", "-"],
    ]
    return markdown_table(header, rows)


if __name__ == "__main__":
    sys.exit(main())
