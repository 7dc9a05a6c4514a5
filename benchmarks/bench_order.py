"""Reading order on a question-sorted file (issue 11, section 3): how many questions the first
training rows span, where validation rows come from, and what a round start costs deep in a pass.

The file: ``--rows`` synthetic rows (``mathverify.data.synthetic``, seed 0: 1-4 rows per question),
sorted by question text as generated data often is, written once as CSV under ``/tmp`` (never the
repository). The run goes through the real ``VerifyDataModule`` (tiny tokenizer, ``buffer_size``
2,048, default validation split ``val_size`` 0.05 / ``val_scan_rows`` 50,000):

- setup: ``setup("fit")`` (validation choice; with shuffled reading it builds the row index);
- distinct questions among the first 10,000 training rows (from position zero);
- validation rows, their distinct questions and the share of the file's tenths they come from;
- round start: ``train_dataloader()`` -> first batch, from position zero and from a position
  ``--deep`` rows into the pass (what a resumed or later round pays), twice each.

``--code DIR`` imports ``mathverify`` from DIR, to measure an older version the same way:

    git archive 2e5b9a9 mathverify | (mkdir -p /tmp/mv-before && tar -x -C /tmp/mv-before)
    python benchmarks/bench_order.py --code /tmp/mv-before     # before
    python benchmarks/bench_order.py                           # after
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def question_sorted_csv(path: Path, rows: int) -> Path:
    """Write ``rows`` synthetic rows sorted by question (external ``sort``: memory stays small)."""
    from mathverify.data.synthetic import CSV_COLUMNS, generate_rows

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw, ordered = path.with_suffix(".unsorted.jsonl"), path.with_suffix(".sorted.jsonl")
    with open(raw, "w", encoding="utf-8") as handle:  # "question" is each line's first key
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in generate_rows(rows, seed=0))
    subprocess.run(["sort", "-S", "1G", "-o", str(ordered), str(raw)], check=True, env={**os.environ, "LC_ALL": "C"})
    raw.unlink()
    tmp = path.with_suffix(".tmp")
    with open(ordered, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8", newline="") as dst:
        writer = csv.DictWriter(dst, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(json.loads(line) for line in src)
    ordered.unlink()
    tmp.replace(path)
    return path


def parquet_copy(path: Path, row_group: int) -> Path:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    target = path.with_name(f"{path.stem}-rg{row_group}.parquet")
    if not target.exists():
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(newlines_in_values=True),
                              convert_options=pcsv.ConvertOptions(column_types={"answer": "string"}))
        pq.write_table(table, target, row_group_size=row_group)
    return target


def saved_copy(path: Path) -> Path:
    """The rows as a ``datasets`` ``save_to_disk`` folder (Arrow), as a hub download is kept in the cache."""
    import datasets

    target = path.with_name(f"{path.stem}-saved")
    if not target.exists():
        datasets.Dataset.from_parquet(str(parquet_copy(path, 10_000))).save_to_disk(str(target))
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--file", default=None, help="default /tmp/mathverify-bench/sorted-<rows>.csv")
    p.add_argument("--code", default=None, help="import mathverify from this folder (an older version)")
    p.add_argument("--train-rows", type=int, default=10_000)
    p.add_argument("--deep", type=int, default=900_000, help="position (rows into the pass) of the late round start")
    p.add_argument("--buffer-size", type=int, default=2048)
    p.add_argument("--parquet-row-group", type=int, default=0,
                   help="read a Parquet copy of the file written with row groups of this many rows")
    p.add_argument("--saved-copy", action="store_true",
                   help="read a datasets save_to_disk copy (Arrow, as a downloaded hub dataset is cached)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    import dataclasses

    import mathverify
    from mathverify.data import VerifyDataModule  # the same name before and after the sub-packages
    try:
        from mathverify.data.split import question_digest
        from mathverify.data.stream import StreamPosition
    except ImportError:  # a checkout from before the sub-packages (--code)
        from mathverify.split import question_digest
        from mathverify.stream import StreamPosition

    path = question_sorted_csv(Path(args.file or f"/tmp/mathverify-bench/sorted-{args.rows}.csv"), args.rows)
    csv_path = path
    if args.parquet_row_group:
        path = parquet_copy(path, args.parquet_row_group)
    if args.saved_copy:
        path = saved_copy(path)
    with open(csv_path, encoding="utf-8", newline="") as handle:  # question of each row number, by the csv module
        question = [question_digest(r["question"]) for r in csv.DictReader(handle)]
    rows = len(question)

    def module():
        dm = VerifyDataModule(train_files=str(path), buffer_size=args.buffer_size, batch_size=8, max_length=1024)
        dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0, logger=None)
        return dm

    def number(row_id: str) -> int:
        return int(row_id.rsplit(":", 1)[1])

    out = {"code": mathverify.__file__, "file": str(path), "rows": rows, "buffer_size": args.buffer_size}
    dm = module()
    started = time.perf_counter()
    dm.setup("fit")
    out["setup_s"] = time.perf_counter() - started
    val_digests = {e["digest"] for e in dm.val_examples}
    out["val_rows"], out["val_questions"] = len(dm.val_examples), len(val_digests)
    # where the validation questions sit in the file: how many of its tenths hold one
    out["val_tenths"] = len({i * 10 // rows for i, d in enumerate(question) if d in val_digests})

    seen: list[int] = []
    started = time.perf_counter()
    for batch in dm.train_dataloader():
        seen.extend(number(i) for i in batch["ids"])
        if len(seen) >= args.train_rows:
            break
    out["first_rows_s"] = time.perf_counter() - started
    seen = seen[: args.train_rows]
    out["train_rows"] = len(seen)
    out["distinct_questions"] = len({question[n - 1] for n in seen})
    out["train_tenths"] = len({(n - 1) * 10 // rows for n in seen})

    fields = {f.name for f in dataclasses.fields(StreamPosition)}
    if hasattr(dm, "_index_pass_done"):  # time a second setup: what the cached keys / index save
        again = module()
        started = time.perf_counter()
        again.setup("fit")
        out["setup_again_s"] = time.perf_counter() - started
    for label, rows_read in (("start_0", 0), ("start_deep", args.deep)):
        for attempt in (1, 2):
            dm.position = StreamPosition(passes=0, rows_read=rows_read, buffer_index=rows_read // args.buffer_size)
            if "order" in fields and rows_read:
                dm.position.order = "shuffled"
            started = time.perf_counter()
            next(iter(dm.train_dataloader()))
            out[f"{label}_{attempt}_s"] = time.perf_counter() - started
    try:
        import resource

        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        pass
    for key, value in out.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
