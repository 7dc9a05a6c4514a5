"""Padding fraction of ``TrainStream`` micro-batches with and without length grouping.

Tokenization only (no model forward): the stream reads synthetic rows from JSONL, tokenizes each
shuffle buffer, and either keeps the shuffled order (``group_by_length=False``) or sorts the buffer
by length, cuts it into micro-batches and shuffles the batches (``True``).
``mathverify.data.examples.padding_fraction`` = padded positions / all positions.

    python benchmarks/bench_padding.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_backbone, markdown_table, write_rows  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--buffer-size", type=int, default=512)
    p.add_argument("--batch-sizes", default="4,16")
    p.add_argument("--length-scales", default="1,3")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = args.rows or (1024 if args.quick else 4096)

    from mathverify.data.examples import padding_fraction
    from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder
    from mathverify.data.sources import resolve_parts
    from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule
    from mathverify.model.backbone import load_tokenizer

    tokenizer = load_tokenizer(str(build_backbone("smollm2-135m", 4)))
    encoder = PromptEncoder(tokenizer, SEED_TEMPLATE, "True", "False", 1024)
    results = []
    for scale in [float(s) for s in args.length_scales.split(",")]:
        parts = resolve_parts(str(write_rows(rows, seed=13, length_scale=scale)))
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            out = {"length_scale": scale, "batch_size": bs, "buffer_size": args.buffer_size, "rows": rows}
            for group in (False, True):
                stream = TrainStream(parts, encoder, tokenizer.pad_token_id, rank=0, world_size=1,
                                     validation=ValidationRule(), batch_size=bs, buffer_size=args.buffer_size,
                                     group_by_length=group, seed=0, start=StreamPosition(), num_batches=rows // bs)
                batches = list(stream)
                out["grouped" if group else "shuffled"] = padding_fraction(batches)
                lengths = [int(x) for b in batches for x in b["lengths"]]
                out["mean_tokens"] = sum(lengths) / len(lengths)
                out["min_tokens"], out["max_tokens"] = min(lengths), max(lengths)
            results.append(out)
    header = ["length-scale", "tokens/row mean (min-max)", "micro-batch", "buffer", "padding shuffled",
              "padding grouped", "positions computed grouped/shuffled"]
    body = [[r["length_scale"], f"{r['mean_tokens']:.0f} ({r['min_tokens']}-{r['max_tokens']})", r["batch_size"],
             r["buffer_size"], f"{100 * r['shuffled']:.1f}%", f"{100 * r['grouped']:.1f}%",
             (1 - r["shuffled"]) / (1 - r["grouped"])] for r in results]
    print(markdown_table(header, body))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
