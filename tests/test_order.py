"""Reading order (issue 11, section 3): plain CSV/JSON-lines sources are read in a seeded
permutation of the whole source per pass, resume by seeking, and validation questions come from
the whole source."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch

from mathverify.data.datamodule import VerifyDataModule
from mathverify.data.holdout import validation_rows
from mathverify.data.rowindex import RowReader, text_index
from mathverify.data.sources import iter_rows, resolve_parts
from mathverify.data.split import question_digest
from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule
from mathverify.data.synthetic import CSV_COLUMNS, generate_rows


@pytest.fixture(autouse=True)
def small_parquet_windows(monkeypatch):
    import mathverify.data.parquet_order

    monkeypatch.setattr(mathverify.data.parquet_order, "WINDOW_ROWS", 48)  # several windows in a small file


def _sorted_file(tmp_path, rows: int, suffix: str = ".csv", seed: int = 1, row_group_size: int = 10) -> str:
    """Synthetic rows sorted by question, as generated data often comes."""
    records = sorted(generate_rows(rows, seed=seed), key=lambda r: r["question"])
    path = tmp_path / f"sorted{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)
        return str(path)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(records)
        else:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def _stream(encoder, tokenizer, spec, start=StreamPosition(), num_batches=None, rank=0, world_size=1,
            batch_size=4, validation=ValidationRule(), shuffle_source=True):
    return TrainStream(resolve_parts(spec), encoder, tokenizer.pad_token_id, rank=rank, world_size=world_size,
                       validation=validation, batch_size=batch_size, buffer_size=32, group_by_length=True, seed=3,
                       start=start, num_batches=num_batches, shuffle_source=shuffle_source)


def _ids(batches):
    return [i for b in batches for i in b["ids"]]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_index_reads_each_row_as_the_file_order_does(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    good = list(generate_rows(40, seed=2))  # solutions span lines
    if suffix == ".csv":
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(good)
        tail = b'q,maybe,1,s\r\n\r\n,True,1,s\rq,True,1\n"bad"x,1,2,3\nq9,True,1,s\n'
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
        tail = b'{"question": \n\n[1]\n{"question":"q","answer":"1","solution":"s","is_correct":true}\n'
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + tail)  # a BOM, CR endings, blank and bad lines
    part = resolve_parts(str(path))[0]
    in_order = [row for _, _, row in iter_rows([part])]
    index, reader = text_index(part), RowReader()
    backwards = [reader.read(index, k) for k in reversed(range(index.rows))][::-1]
    reader.close()
    assert index.rows == len(in_order) == len(good) + (5 if suffix == ".csv" else 3)
    assert backwards == in_order  # bad rows too, with the same reasons and line numbers
    assert any("__bad_row__" in r for r in backwards)


def test_index_is_saved_and_rebuilt_when_the_file_changes(tmp_path, monkeypatch):
    import mathverify.data.rowindex as rowindex

    path = _sorted_file(tmp_path, 30, ".jsonl")
    part = resolve_parts(path)[0]
    first = text_index(part)
    rowindex._CACHE.clear()  # as a new process starts
    monkeypatch.setattr(rowindex, "_build", lambda *a: pytest.fail("rebuilt although saved"))
    again = text_index(part)
    assert again.rows == 30 and (again.offsets == first.offsets).all() and (again.digest_keys == first.digest_keys).all()
    monkeypatch.undo()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "new", "answer": "1", "solution": "s", "is_correct": True}) + "\n")
    grown = text_index(resolve_parts(path)[0])
    assert grown.rows == 31 and RowReader().read(grown, 30)["question"] == "new"


def test_parquet_question_keys_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import mathverify.data.rowindex as rowindex
    from mathverify.data.parquet_order import ParquetSource
    from mathverify.data.split import question_digest

    path = _sorted_file(tmp_path, 30, ".parquet")
    first = ParquetSource(resolve_parts(path)).digest_keys()
    questions = pq.read_table(path, columns=["question"]).column(0).to_pylist()
    assert first.tolist() == [int(question_digest(q)[:16], 16) for q in questions]
    monkeypatch.setattr(rowindex, "digest_key", lambda q: pytest.fail("computed although cached"))
    assert (ParquetSource(resolve_parts(path)).digest_keys() == first).all()  # a new source: from the cache
    monkeypatch.undo()
    pq.write_table(pa.Table.from_pylist([{"question": "new", "answer": "1", "solution": "s", "is_correct": True}]), path)
    assert ParquetSource(resolve_parts(path)).digest_keys().tolist() == [int(question_digest("new")[:16], 16)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_sorted_file_first_rows_span_many_questions(encoder, tokenizer, tmp_path, suffix, monkeypatch):
    import mathverify.data.parquet_order

    monkeypatch.setattr(mathverify.data.parquet_order, "WINDOW_ROWS", 200)  # 20 random row groups of 10 rows
    path = _sorted_file(tmp_path, 600, suffix)
    questions = {i + 1: question_digest(r["question"]) for i, r in
                 enumerate(row for _, _, row in iter_rows(resolve_parts(path)))}

    def distinct(shuffle):
        batches = list(_stream(encoder, tokenizer, path, num_batches=16, shuffle_source=shuffle))
        return len({questions[int(i.rsplit(":", 1)[1])] for i in _ids(batches)})  # in the first 64 rows

    in_file_order, shuffled = distinct(False), distinct(True)
    # 64 rows; about 5.5 rows per question, ~110 questions (measured: 9 in file order; shuffled 47 from
    # CSV, 30 from Parquet, whose 20-row-group windows mix less)
    assert in_file_order <= 16 and shuffled >= (40 if suffix == ".csv" else 25)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_shuffled_pass_reads_every_row_once_and_passes_differ(encoder, tokenizer, tmp_path, suffix):
    path = _sorted_file(tmp_path, 40, suffix)
    batches = list(_stream(encoder, tokenizer, path, num_batches=25))
    ids = _ids(batches)
    assert len(ids) == 100 and sorted(ids[:40]) == sorted(ids[40:80]) and len(set(ids)) == 40
    assert ids[:40] != ids[40:80]
    assert batches[-1]["stream"]["position"]["passes"] == 2
    assert batches[-1]["stream"]["position"]["order"] == "shuffled"


@pytest.mark.parametrize("suffix,row_group_size", [(".csv", 0), (".parquet", 10), (".parquet", 100)])
def test_shuffled_resume_from_any_batch_gives_the_same_rows(encoder, tokenizer, tmp_path, suffix, row_group_size):
    """Parquet: row groups of 10 (windows of several groups) or 100 (read in pieces of 48 rows)."""
    path = _sorted_file(tmp_path, 150, suffix, row_group_size=row_group_size)
    reference = list(_stream(encoder, tokenizer, path, num_batches=45))  # past the end of pass 1
    for k in (0, 4, 7, 8, 19, 37):
        position = StreamPosition(**reference[k]["stream"]["position"])
        resumed = list(_stream(encoder, tokenizer, path, start=position, num_batches=45 - k - 1))
        assert [b["ids"] for b in resumed] == [b["ids"] for b in reference[k + 1:]]
        assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(resumed, reference[k + 1:]))


def test_shuffled_micro_batch_size_change_mid_buffer_repeats_and_skips_no_row(encoder, tokenizer, tmp_path):
    path = _sorted_file(tmp_path, 64)

    def rest_of_buffer(batch_size, start):
        out = []
        for batch in _stream(encoder, tokenizer, path, start=start, batch_size=batch_size):
            out.append(batch)
            if batch["stream"]["position"]["buffer_index"] == 1:
                return out

    first = rest_of_buffer(4, StreamPosition())[:3]
    second = rest_of_buffer(2, StreamPosition(**first[-1]["stream"]["position"]))
    rows = _ids(first + second)
    assert len(rows) == 32 and len(set(rows)) == 32


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_shuffled_ranks_read_disjoint_rows_of_their_shard(encoder, tokenizer, tmp_path, suffix):
    path = _sorted_file(tmp_path, 64, suffix)
    seen = []
    for rank in (0, 1):
        batches = list(_stream(encoder, tokenizer, path, rank=rank, world_size=2, num_batches=8))
        assert all(int(i) % 2 == rank for b in batches for i in b["row_index"])  # global row index % world size
        seen.append(set(_ids(batches)))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 64


def test_a_pass_begun_in_file_order_finishes_in_file_order(encoder, tokenizer, tmp_path):
    """A checkpoint written before shuffled reading (no ``order``: file order) resumes exactly."""
    path = _sorted_file(tmp_path, 40)  # a pass: a buffer of 32 rows and one of 8 (10 batches)
    old = list(_stream(encoder, tokenizer, path, num_batches=10, shuffle_source=False))
    saved = dict(old[3]["stream"]["position"])
    saved.pop("order")  # as an older checkpoint has it
    resumed = list(_stream(encoder, tokenizer, path, start=StreamPosition(**saved), num_batches=12))
    assert [b["ids"] for b in resumed[:6]] == [b["ids"] for b in old[4:10]]  # rest of pass 1: file order
    assert resumed[5]["stream"]["position"]["passes"] == 1
    assert resumed[5]["stream"]["position"]["order"] == "shuffled"  # pass 2 is read shuffled
    assert resumed[4]["stream"]["position"]["order"] == "file"


def test_bad_rows_are_counted_in_shuffled_order(encoder, tokenizer, write_csv):
    rows = [{"question": f"q{i}", "is_correct": "yes" if i % 2 else "0", "answer": "1", "solution": "s"}
            for i in range(12)]
    rows[2]["is_correct"] = "perhaps"
    rows[5]["question"] = ""
    batches = list(_stream(encoder, tokenizer, write_csv(rows), num_batches=3))
    assert sum(len(b["ids"]) for b in batches) == 10
    assert batches[0]["stream"]["skipped"] == {"unreadable label": 1, "empty question": 1}
    assert batches[0]["stream"]["position"]["order"] == "shuffled"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_validation_questions_come_from_the_whole_source(tmp_path, suffix):
    path = _sorted_file(tmp_path, 2000, suffix, row_group_size=100)
    parts = resolve_parts(path)
    digests = [question_digest(r["question"]) for _, _, r in iter_rows(parts)]
    rows, rule = validation_rows(parts, 0.1, 500)  # fraction: 50 rows of validation questions
    numbers = [n for _, n, _ in rows]
    assert len(rows) == 50 and all(rule.is_validation(digests[n - 1]) for n in numbers)
    assert max(numbers) > 1500 and min(numbers) < 500  # spread over the file, not its first 500 rows

    rows, rule = validation_rows(parts, 60, 500)  # a row count: questions in digest order, whole source
    by_question = {}
    for d in digests:
        by_question[d] = by_question.get(d, 0) + 1
    smallest, covered = [], 0
    for d in sorted(by_question):
        if covered >= 60:
            break
        smallest.append(d)
        covered += by_question[d]
    assert rule.digests == frozenset(smallest) and len(rows) == covered
    assert sorted(n for _, n, _ in rows) == [i + 1 for i, d in enumerate(digests) if d in rule.digests]


def test_data_module_validation_and_training_never_share_a_question(tiny_path, tmp_path):
    path = _sorted_file(tmp_path, 400)
    dm = VerifyDataModule(backbone=tiny_path, max_length=512, train_files=path, val_size=40, buffer_size=64)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    dm.setup("fit")
    unseen = [e for e in dm.val_examples if e["view"] == 0]  # view 1 holds rows of training questions on purpose
    val = {e["digest"] for e in unseen}
    rows = [r for _, _, r in iter_rows(resolve_parts(path))]
    trained = set()
    for batch, _ in zip(dm.train_dataloader(), range(12)):
        trained |= {question_digest(rows[int(i.rsplit(":", 1)[1]) - 1]["question"]) for i in batch["ids"]}
    assert len(unseen) >= 40 and trained and not trained & val
