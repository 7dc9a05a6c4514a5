"""``mathverify score``: P(True) of every row of a data set, written beside the row's own columns.

For filtering generated solutions at scale::

    mathverify score --model demo:best --input data/generated.parquet --output scored.parquet --keep-above 0.9

Reads any source ``fit`` reads (files, globs, folders, hub names). Two passes over the input:
the first checks every row (a bad row is a one-line error naming file, row and column before any
model loads, or with ``--skip-bad`` is skipped and counted) and counts each question's answers
(the evidence pool: what ``predict`` computes from its file; one entry per distinct question and
answer, not per row); the second scores the rows in chunks of ``--chunk-rows`` (longest first
within a chunk) and writes each chunk as a part file, atomically. Memory holds one chunk and the
pool, whatever the row count. When every chunk is done the parts are joined, in input order,
into ``--output`` (``.parquet`` or ``.jsonl``), atomically.

Killed, it resumes: run the same command again and it continues after the last part written
(``OUTPUT.parts/`` holds the parts, the pool and the settings; other settings or another input
file are refused, ``--overwrite`` starts over). ``--devices N`` runs N processes (CUDA device i,
or CPU processes sharing the cores), each scoring every N-th chunk; every row is scored once.

Columns written: the input's, plus ``p_true`` and ``is_correct`` (True above the stored decision
threshold of the row's case); when the input has its own ``is_correct`` (labels), it is kept and
the decision is written as ``is_correct_predicted``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from mathverify.atomic import atomic_file

FORMATS = (".parquet", ".jsonl")
STATE = "state.json"
POOL = "pool.json.gz"


def _batch_size(text: str):
    """--batch-size: a whole number >= 1, or auto."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or auto, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mathverify score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export folder, checkpoint file, or RUN:best / RUN:last")
    parser.add_argument("--input", required=True, nargs="+", help="rows to score: files, globs, folders or hub names")
    parser.add_argument("--output", required=True, help="file to write: .parquet or .jsonl")
    parser.add_argument("--keep-above", type=float, default=None, metavar="P",
                        help="write only rows with p_true above P (filtering); default: every row")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if there is one)")
    parser.add_argument("--devices", type=int, default=1, help="processes, one per device (CUDA i, or CPU)")
    parser.add_argument("--batch-size", type=_batch_size, default="auto",
                        help="rows per forward pass, or auto (default, as predict): 16 on a CPU, on a GPU as many as its free memory holds")
    parser.add_argument("--chunk-rows", type=int, default=4096, help="rows scored and written together")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace the output and any unfinished run")
    parser.add_argument("--logs_dir", default="lightning_logs", help="root of the run folders (short forms)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from mathverify.data.sources import DataError
    from mathverify.verifier import VerifierError

    from mathverify.quiet import quiet_startup

    args = build_parser().parse_args(argv)
    quiet_startup("score")
    try:
        run(args)
    except (DataError, VerifierError, ValueError) as err:
        raise SystemExit(f"mathverify score: error: {err}") from None
    return 0


# ----- the job -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> Path:
    from mathverify.data.sources import resolve_parts

    output = Path(args.output)
    if output.suffix.lower() not in FORMATS:
        raise ValueError(f"--output {output}: write .parquet or .jsonl")
    if args.chunk_rows < 1 or args.devices < 1:
        raise ValueError("--chunk-rows and --devices must be at least 1")
    if args.keep_above is not None and not 0 <= args.keep_above < 1:
        raise ValueError(f"--keep-above must be in [0, 1), got {args.keep_above}")
    import torch

    gpus = torch.cuda.device_count()
    process_device(args.device, 0, args.devices, gpus)  # more CUDA processes than GPUs: refused before any work
    args.device = process_device(args.device, 0, 1, gpus)  # the one asked for, else the first GPU, else the CPU
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} already exists; pass --overwrite to replace it")
    parts = resolve_parts(args.input)
    work = output.with_name(output.name + ".parts")
    settings = {"input": [_identity(p) for p in parts], "model": str(args.model), "chunk_rows": args.chunk_rows,
                "keep_above": args.keep_above, "skip_bad": args.skip_bad}
    state = _start(work, settings, args.overwrite)
    if "rows" not in state:  # pass 1 (also on a resume killed before it ended)
        state.update(_first_pass(parts, work, args.skip_bad))
        _write_json(work / STATE, state)
    chunks = math.ceil(state["rows"] / args.chunk_rows)
    todo = [k for k in range(chunks) if not (work / f"part-{k:06d}.done").exists()]
    if len(todo) < chunks:
        print(f"mathverify score: resuming: {chunks - len(todo)} of {chunks} chunks already written", file=sys.stderr)
    started = time.perf_counter()
    if todo and args.devices == 1:
        _score_chunks(args, parts, work, todo, rank=0, world=1)
    elif todo:
        _spawn(args, parts, work, todo)
    missing = [k for k in range(chunks) if not (work / f"part-{k:06d}.done").exists()]
    if missing:
        raise ValueError(f"{len(missing)} chunk(s) were not scored (first: {missing[0]}); run the command again")
    written = _join(work, chunks, output)
    seconds = time.perf_counter() - started
    now = sum(min(args.chunk_rows, state["rows"] - k * args.chunk_rows) for k in todo)  # rows read this run
    print(f"mathverify score: {state['rows']} rows ({state['bad']} bad, skipped); {now} scored in this run in "
          f"{seconds:.1f} s ({now / max(seconds, 1e-9):.1f} rows/s); {written} written to {output}", file=sys.stderr)
    shutil.rmtree(work)
    return output


def _identity(part) -> dict:
    """What identifies an input part for a resume: path, size and modification time of a file."""
    if part.kind in ("csv", "json", "parquet") and os.path.isfile(part.arg):
        stat = os.stat(part.arg)
        return {"name": os.path.abspath(part.arg), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"name": part.name}


def _start(work: Path, settings: dict, overwrite: bool) -> dict:
    if work.exists() and overwrite:
        shutil.rmtree(work)
    if work.exists():
        try:
            state = json.loads((work / STATE).read_text())
        except (OSError, ValueError):
            raise ValueError(f"{work} holds no readable {STATE}: remove it or pass --overwrite") from None
        if state.get("settings") != settings:
            raise ValueError(f"{work} is an unfinished run with other settings or another input; "
                             "pass --overwrite to start over")
        return state
    work.mkdir(parents=True)
    state = {"settings": settings}
    _write_json(work / STATE, state)
    return state


def _first_pass(parts, work: Path, skip_bad: bool) -> dict:
    """Check every row and count each question's answers (the evidence pool, saved in ``work``)."""
    from mathverify.data.examples import clean_row, row_error
    from mathverify.data.sources import iter_rows
    from mathverify.data.split import question_digest
    from mathverify.evidence.answers import answer_key
    from mathverify.evidence.checks import flawed_in_order
    from mathverify.evidence.index import EvidenceIndex, save_json
    from mathverify.verifier import with_boxed_answer

    counted = {"rows": 0, "bad": 0}

    def good_rows():
        for name, number, raw in iter_rows(parts):
            counted["rows"] += 1
            row = with_boxed_answer(raw)
            clean, reason, column = clean_row(row, need_label=False)
            if clean is None:
                if not skip_bad:
                    raise row_error(name, number, reason, column, row)
                counted["bad"] += 1
                continue
            yield clean

    pool = EvidenceIndex()
    # each row's solution checks (evidence.checks) count with its vote; many rows: in worker processes
    for clean, bad in flawed_in_order(good_rows(), lambda clean: (clean["solution"], clean["answer"])):
        pool.add(question_digest(clean["question"]), answer_key(clean["answer"]), None, bad)
    rows, bad = counted["rows"], counted["bad"]
    if rows == 0:
        raise ValueError(f"{parts[0].name}: no rows to score")
    save_json(pool.to_json(), work / POOL)
    return {"rows": rows, "bad": bad}


def _chunks(parts, chunk_rows: int, wanted: set[int]) -> Iterator[tuple[int, list]]:
    """(chunk number, its rows) for the wanted chunks, reading the input once from the first."""
    from mathverify.data.sources import iter_rows

    first = min(wanted)
    k, rows = first, []
    for item in iter_rows(parts, start=first * chunk_rows):
        rows.append(item)
        if len(rows) == chunk_rows:
            if k in wanted:
                yield k, rows
            k, rows = k + 1, []
            if k > max(wanted):
                return
    if rows and k in wanted:
        yield k, rows


def process_device(requested: Optional[str], rank: int, world: int, gpus: int) -> str:
    """The device of score process ``rank`` of ``world``: the one asked for, else the first GPU if
    there is one, else the CPU; several processes on CUDA take one GPU each (process i, GPU i)."""
    device = requested or ("cuda" if gpus else "cpu")
    if world > 1 and device.startswith("cuda"):
        if world > gpus:
            raise ValueError(f"--devices {world} on CUDA needs {world} GPUs; this machine has {gpus}")
        return f"cuda:{rank}"
    return device


def _score_chunks(args, parts, work: Path, todo: list[int], rank: int, world: int) -> None:
    """Score this process's chunks (every ``world``-th of ``todo``) and write each as a part."""
    from mathverify.evidence.index import EvidenceIndex, eval_aliases
    from mathverify.verifier import Verifier

    mine = set(todo[rank::world])
    if not mine:
        return
    device = process_device(args.device, rank, world, world)
    verifier = Verifier.load(args.model, device=device, batch_size=args.batch_size, logs_dir=args.logs_dir)
    pool = EvidenceIndex.load(work / POOL) if verifier.module.hparams.evidence else None
    aliases = eval_aliases(verifier.index, pool) if pool is not None else {}
    started, done_rows = time.perf_counter(), 0
    label = f"rank {rank}: " if world > 1 else ""
    for k, rows in _chunks(parts, args.chunk_rows, mine):
        records = score_rows(verifier, rows, pool, aliases, args.keep_above)
        _write_part(work, k, records, Path(args.output).suffix.lower())
        done_rows += len(rows)
        rate = done_rows / max(time.perf_counter() - started, 1e-9)
        left = sum(1 for j in mine if j > k) * args.chunk_rows
        print(f"mathverify score: {label}chunk {k + 1}/{max(todo) + 1}, {done_rows} rows, {rate:.1f} rows/s, "
              f"about {left / rate / 60:.1f} min left", file=sys.stderr, flush=True)


def score_rows(verifier, rows: list, pool, aliases: dict, keep_above: Optional[float]) -> list[dict]:
    """The output records of one chunk of ``(name, number, raw row)``: good rows only, in order."""
    from mathverify.data.examples import checked_examples, clean_row
    from mathverify.evidence.index import eval_features
    from mathverify.verifier import with_boxed_answer

    good, raws = [], []
    for name, number, raw in rows:
        row = with_boxed_answer(raw)
        if clean_row(row, need_label=False)[0] is None:
            continue  # counted in the first pass (which stops on it without --skip-bad)
        good.append((name, number, {k: v for k, v in row.items() if k != "ID"}))  # IDs need not be integers here
        raws.append(raw)
    if not good:
        return []
    examples = checked_examples(good, verifier.encoder, need_label=False, solution_checks=pool is not None)
    if pool is not None:
        for e in examples:
            e["evidence"] = eval_features(verifier.index, pool, e["digest"], e["answer_key"], "pool",
                                          aliases.get(e["digest"]), e["flawed"])
    low, seen = verifier.thresholds
    records = []
    for raw, (p, labelled) in zip(raws, verifier.run(examples)):
        if keep_above is not None and not p > keep_above:
            continue
        decision = "is_correct_predicted" if "is_correct" in raw else "is_correct"
        records.append({**raw, "p_true": p, decision: bool(p > (seen if labelled else low))})
    return records


def _spawn(args, parts, work: Path, todo: list[int]) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(args, parts, work, todo, rank, args.devices))
               for rank in range(args.devices)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    failed = [r for r, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise ValueError(f"score process(es) {failed} failed (their error is above); run the command again to resume")


def _worker(args, parts, work: Path, todo: list[int], rank: int, world: int) -> None:
    import torch

    from mathverify.quiet import quiet_startup

    quiet_startup("score")
    if not (args.device or "").startswith("cuda"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # CPU processes share the cores
    try:
        _score_chunks(args, parts, work, todo, rank, world)
    except Exception as err:
        print(f"mathverify score: rank {rank}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


# ----- files: each written through mathverify.atomic (temporary file, fsync, rename) -----------
def _write_json(path: Path, value: dict) -> None:
    with atomic_file(path, "w", encoding="utf-8") as out:
        out.write(json.dumps(value))


def _write_part(work: Path, k: int, records: list[dict], suffix: str) -> None:
    """Chunk ``k``'s records as ``part-k{suffix}`` (absent when none passed the filter), then its
    ``.done`` marker: a chunk counts as written only once both are complete on disk."""
    if records:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            with atomic_file(work / f"part-{k:06d}{suffix}", "wb") as out:
                pq.write_table(pa.Table.from_pylist(records), out)
        else:
            with atomic_file(work / f"part-{k:06d}{suffix}", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)
    with atomic_file(work / f"part-{k:06d}.done", "w") as out:
        out.write(str(len(records)))


def _join(work: Path, chunks: int, output: Path) -> int:
    """Join the parts in chunk order into ``output`` (atomically); returns the rows written."""
    suffix = output.suffix.lower()
    paths = [p for p in (work / f"part-{k:06d}{suffix}" for k in range(chunks)) if p.exists()]
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with atomic_file(output, "wb") as out:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = (pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive") if paths
                      else pa.schema([("p_true", pa.float64())]))
            with pq.ParquetWriter(out, schema) as writer:
                for path in paths:  # one part in memory at a time
                    table = pq.read_table(path)
                    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                               else pa.nulls(len(table), f.type) for f in schema]
                    writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                    rows += len(table)
        else:
            for path in paths:
                with open(path, "rb") as part:
                    shutil.copyfileobj(part, out)
                rows += int((work / path.name.replace(suffix, ".done")).read_text())
    return rows


if __name__ == "__main__":
    sys.exit(main())
