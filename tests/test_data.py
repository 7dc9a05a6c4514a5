from types import SimpleNamespace

import pytest
import torch

from mathverify.data.datamodule import VerifyDataModule
from mathverify.data.sources import DataError, resolve_parts
from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule
from mathverify.data.synthetic import generate_rows


def _stream(encoder, tokenizer, start=StreamPosition(), num_batches=None, rank=0, world_size=1,
            spec="synthetic:300:1", validation=ValidationRule()):
    return TrainStream(resolve_parts(spec), encoder, tokenizer.pad_token_id, rank=rank, world_size=world_size,
                       validation=validation, batch_size=4, buffer_size=32, group_by_length=True, seed=3,
                       start=start, num_batches=num_batches)


def _datamodule(tiny_path, **kwargs):
    dm = VerifyDataModule(backbone=tiny_path, max_length=512, **kwargs)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    return dm


def test_resume_from_any_batch_gives_the_same_rows(encoder, tokenizer):
    reference = list(_stream(encoder, tokenizer, num_batches=30))
    for k in (0, 4, 7, 8, 19):  # inside a buffer, at buffer ends (8 batches of 4 per buffer of 32)
        position = StreamPosition(**reference[k]["stream"]["position"])
        resumed = list(_stream(encoder, tokenizer, start=position, num_batches=30 - k - 1))
        assert [b["ids"] for b in resumed] == [b["ids"] for b in reference[k + 1:]]
        assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(resumed, reference[k + 1:]))


def test_stream_cycles_passes_and_reshuffles(encoder, tokenizer):
    batches = list(_stream(encoder, tokenizer, spec="synthetic:40:1", num_batches=25))
    ids = [i for b in batches for i in b["ids"]]
    assert len(ids) == 100 and len(set(ids)) == 40  # 2.5 passes over 40 rows
    assert batches[-1]["stream"]["position"]["passes"] == 2
    assert ids[:40] != ids[40:80] and sorted(ids[:40]) == sorted(ids[40:80])


def test_ranks_read_disjoint_rows(encoder, tokenizer):
    seen = []
    for rank in (0, 1):
        batches = list(_stream(encoder, tokenizer, spec="synthetic:64:2", rank=rank, world_size=2, num_batches=8))
        seen.append({i for b in batches for i in b["ids"]})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 64


def test_length_grouping_reduces_padding(encoder, tokenizer):
    from mathverify.data.examples import padding_fraction

    grouped = list(_stream(encoder, tokenizer, num_batches=40))
    plain = TrainStream(resolve_parts("synthetic:300:1"), encoder, tokenizer.pad_token_id, rank=0, world_size=1,
                        validation=ValidationRule(), batch_size=4, buffer_size=32, group_by_length=False, seed=3,
                        start=StreamPosition(), num_batches=40)
    assert padding_fraction(grouped) < padding_fraction(list(plain))


def test_validation_split_by_question_never_leaks(tiny_path):
    dm = _datamodule(tiny_path, train_files="synthetic:400:5", val_size=60, val_scan_rows=400, buffer_size=64)
    dm.setup("fit")
    unseen = [e for e in dm.val_examples if e["view"] == 0]  # view 1: held-out rows of training questions
    val_ids = {e["digest"] for e in unseen}
    assert 60 <= len(unseen) <= 60 + 11  # whole questions (at most 12 rows each) until 60 rows
    assert not val_ids & {e["digest"] for e in dm.val_examples if e["view"] == 1}
    train_rows = [i for b in _take(dm.train_dataloader(), 40) for i in b["ids"]]
    from mathverify.data.split import question_digest
    rows = list(generate_rows(400, seed=5))
    train_digests = {question_digest(rows[int(i.rsplit(":", 1)[1]) - 1]["question"]) for i in train_rows}
    assert train_digests and not train_digests & val_ids


def _take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_bad_label_in_validation_names_file_row_column(tiny_path, write_csv):
    rows = [{"question": f"q{i}", "is_correct": "True", "answer": "1", "solution": "s"} for i in range(5)]
    rows[3]["is_correct"] = "maybe"
    path = write_csv(rows)
    dm = _datamodule(tiny_path, train_files="synthetic:50:0", val_files=path)
    with pytest.raises(DataError, match=r"rows\.csv: row 4, column is_correct: unreadable label \('maybe'\)"):
        dm.setup("fit")


def test_bad_training_rows_are_skipped_and_counted(encoder, tokenizer, write_csv):
    rows = [{"question": f"q{i}", "is_correct": "yes" if i % 2 else "0", "answer": "1", "solution": "s"}
            for i in range(12)]
    rows[2]["is_correct"] = "perhaps"
    rows[5]["question"] = ""
    path = write_csv(rows)
    batches = list(_stream(encoder, tokenizer, spec=path, num_batches=3))
    assert sum(len(b["ids"]) for b in batches) == 10
    assert batches[0]["stream"]["skipped"] == {"unreadable label": 1, "empty question": 1}
    labels = [int(v) for b in batches for v in b["labels"]]
    assert sorted(labels) == sorted(int(i % 2) for i in range(12) if i not in (2, 5))


def test_predict_yields_every_row_once_with_its_id_in_length_sorted_batches(tiny_path, write_csv):
    from mathverify.data.examples import padding_fraction

    rows = [{"ID": 10 + i, "question": f"q{i}", "answer": str(i), "solution": "x " * (i * 13 % 50 + 1)}
            for i in range(23)]
    dm = _datamodule(tiny_path, predict_files=write_csv(rows), eval_batch_size=5)
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    pairs = sorted((int(r), i) for b in batches for r, i in zip(b["row_index"], b["ids"]))
    assert pairs == [(i, str(10 + i)) for i in range(23)]  # the writer sorts by row_index
    lengths = [int(n) for b in batches for n in b["lengths"]]
    assert lengths == sorted(lengths, reverse=True) and padding_fraction(batches) < 0.1


def test_missing_columns_and_files_are_clear(tiny_path, write_csv, tmp_path):
    path = write_csv([{"question": "q", "solution": "s"}])
    dm = _datamodule(tiny_path, predict_files=path)
    with pytest.raises(DataError, match="missing column\\(s\\) answer; found question, solution"):
        dm.setup("predict")
    dm = _datamodule(tiny_path, predict_files=str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="nope.csv: no such file"):
        dm.setup("predict")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_formats_read_the_same_rows(tiny_path, tmp_path, suffix):
    from mathverify.data.synthetic import write_rows

    path = write_rows(tmp_path / f"test{suffix}", 12, seed=4, test=True)
    dm = _datamodule(tiny_path, predict_files=str(path))
    dm.setup("predict")
    assert [e["id"] for e in dm.predict_examples] == [str(i) for i in range(12)]


def test_mostly_bad_training_file_stops_with_a_clear_error(tiny_path, write_csv):
    rows = [{"question": f"q{i}", "is_correct": "perhaps" if i % 3 else "1", "answer": "1", "solution": "s"}
            for i in range(60)]
    dm = _datamodule(tiny_path, train_files=write_csv(rows), val_files=write_csv(rows[::3][:3], "val.csv"),
                     batch_size=4, buffer_size=16, max_bad_fraction=0.2, min_rows_for_bad_cap=10)
    dm.trainer = None  # no logger needed for this check
    dm.setup("fit")
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    with pytest.raises(DataError, match=r"unreadable, over data.max_bad_fraction=0.2 \(unreadable label: \d+\)"):
        for batch in _take(dm.train_dataloader(), 10):
            dm.on_before_batch_transfer(batch, 0)


def test_stream_state_round_trip_and_world_size_mismatch(tiny_path):
    dm = _datamodule(tiny_path, train_files="synthetic:50:0")
    dm.position.rows_read, dm.stats["rows_seen"] = 32, 40
    state = dm.state_dict()
    assert state["world_size"] == 1
    fresh = _datamodule(tiny_path, train_files="synthetic:50:0")
    fresh.load_state_dict(state)
    assert fresh.position.rows_read == 32 and fresh.stats["rows_seen"] == 40
    two_ranks = {**state, "world_size": 2, "ranks": [state, state]}
    with pytest.raises(DataError, match=r"written by 2 process\(es\), this run has 1: resume with the same number"):
        fresh.load_state_dict(two_ranks)


def test_a_new_micro_batch_size_mid_buffer_repeats_and_skips_no_row(encoder, tokenizer):
    def rest_of_buffer(batch_size, start):
        """Batches from ``start`` to the end of its buffer of 32 rows."""
        out = []
        for batch in TrainStream(resolve_parts("synthetic:64:1"), encoder, tokenizer.pad_token_id, rank=0,
                                 world_size=1, validation=ValidationRule(), batch_size=batch_size, buffer_size=32,
                                 group_by_length=True, seed=3, start=start, num_batches=None):
            out.append(batch)
            if batch["stream"]["position"]["buffer_index"] == 1:
                return out

    def ids(batches):
        return [i for b in batches for i in b["ids"]]

    first = rest_of_buffer(4, StreamPosition())[:3]  # round 1: 3 batches of 4
    second = rest_of_buffer(2, StreamPosition(**first[-1]["stream"]["position"]))  # round 2: size 2
    assert all(len(b["ids"]) == 2 for b in second)
    assert len(ids(first + second)) == 32 and len(set(ids(first + second))) == 32  # whole buffer, once each
    # resume inside round 2 and change the size once more: still every row once
    third = rest_of_buffer(3, StreamPosition(**second[2]["stream"]["position"]))
    rows = ids(first + second[:3] + third)
    assert len(rows) == 32 and set(rows) == set(ids(first + second))


def test_test_file_with_placeholder_labels_is_refused_in_one_line(tiny_path, write_csv):
    rows = [{"question": f"q{i}", "is_correct": "True", "answer": "1", "solution": "s"} for i in range(4)]
    dm = _datamodule(tiny_path, test_files=write_csv(rows))
    with pytest.raises(DataError, match=r"rows.csv: all 4 labels are True: placeholders \(as in the contest's test split\)"):
        dm.setup("test")
    rows[0]["is_correct"] = "False"  # both labels: a real test set
    _datamodule(tiny_path, test_files=write_csv(rows, "both.csv")).setup("test")


def test_test_file_without_a_label_column_is_refused_in_one_line(tiny_path, write_csv):
    rows = [{"ID": i, "question": f"q{i}", "answer": "1", "solution": "s"} for i in range(4)]
    dm = _datamodule(tiny_path, test_files=write_csv(rows))
    with pytest.raises(DataError) as refused:
        dm.setup("test")
    assert str(refused.value) == ("{}: no is_correct column (columns: ID, question, answer, solution): labelled rows are "
                                  "needed here; predict or score take unlabelled rows").format(dm.hparams.test_files)
