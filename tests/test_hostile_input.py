"""Hostile input (issue 5): every bad file, row or setting gets one clear line, before any weight loads.

Most tests use the data layer directly (no model); the CLI tests patch the weight loader so that
a test fails loudly if a bad input were only discovered after the model load.
"""

import gzip
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mathverify.data.datamodule import VerifyDataModule
from mathverify.data.examples import clean_row
from mathverify.data.labels import LabelError, parse_label
from mathverify.data.sources import DataError, iter_rows, resolve_parts
from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule

HEADER = "question,is_correct,answer,solution\n"


def _dm(tiny_path, **kwargs):
    dm = VerifyDataModule(backbone=tiny_path, max_length=kwargs.pop("max_length", 256), **kwargs)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    return dm


def _row(i, **over):
    return {"question": f"How many apples does Ann have in case {i}?", "is_correct": i % 2 == 0,
            "answer": str(i), "solution": f"She has {i} apples. \\boxed{{{i}}}", **over}


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _stream(encoder, spec, num_batches=2, batch_size=4):
    return list(TrainStream(resolve_parts(spec), encoder, 0, rank=0, world_size=1, validation=ValidationRule(),
                            batch_size=batch_size, buffer_size=16, group_by_length=False, seed=0,
                            start=StreamPosition(), num_batches=num_batches))


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# ----- files ---------------------------------------------------------------------------------
def test_missing_path_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        resolve_parts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="no such file"):
        resolve_parts("./missing/folder")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        resolve_parts(str(tmp_path / "empty.csv"))


def test_header_only_csv_and_schema_only_parquet_fail_up_front(tmp_path):
    from mathverify.data.synthetic import write_rows

    (tmp_path / "h.csv").write_text(HEADER)
    with pytest.raises(DataError, match=r"h\.csv: no data rows"):
        resolve_parts(str(tmp_path / "h.csv"))
    write_rows(tmp_path / "h.parquet", 0)
    with pytest.raises(DataError, match=r"h\.parquet: no data rows"):
        resolve_parts(str(tmp_path / "h.parquet"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_columns_say_missing_and_found(tmp_path, suffix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "q", "Solution": "s", "is_correct": "True"}]
    path = tmp_path / f"cols{suffix}"
    if suffix == ".csv":
        path.write_text("question,Solution,is_correct\nq,s,True\n")
    elif suffix == ".jsonl":
        _jsonl(path, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError) as err:
        resolve_parts(str(path))  # before any row is tokenized
    assert "missing column(s) answer, solution; found question, Solution, is_correct" in _one_line(err)


def test_extra_columns_are_ignored(tiny_path, write_csv):
    rows = [dict(_row(i), ID=i, source="gsm8k", note="") for i in range(3)]
    dm = _dm(tiny_path, predict_files=write_csv(rows))
    dm.setup("predict")
    assert [e["id"] for e in dm.predict_examples] == ["0", "1", "2"]


def test_broken_csv_rows_are_skipped_in_training_and_named_in_predict(tiny_path, encoder, tmp_path):
    good = "".join(f"q{i},True,1,s{i}\n" for i in range(8))
    path = tmp_path / "broken.csv"
    path.write_text(HEADER + "qa,True,1,s,EXTRA\n" + good + 'qb,"Tr"ue,1,s\n' + "qc,False,1\n")
    batches = _stream(encoder, str(path), num_batches=2)
    assert sum(len(b["ids"]) for b in batches) == 8
    assert batches[0]["stream"]["skipped"] == {"wrong CSV field count": 2, "broken CSV quoting": 1}
    dm = _dm(tiny_path, predict_files=str(path))
    with pytest.raises(DataError) as err:
        dm.setup("predict")
    text = _one_line(err)
    assert text.startswith("3 bad row(s)")
    assert "broken.csv: row 1: line 2 has 5 fields, header has 4" in text
    assert "broken.csv: row 10: broken CSV quoting at line 11" in text


def test_unclosed_quote_stops_naming_file_and_line(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text(HEADER + "q1,True,1,s\n" + '"q2,True,1,s\n' + "q3,True,1,s\n")
    with pytest.raises(DataError) as err:
        list(iter_rows(resolve_parts(str(path))))
    assert "quote.csv: line 3: unclosed quote" in _one_line(err)


def test_multiline_quoted_solution_keeps_row_numbers(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text(HEADER + 'q1,True,1,"line one\nline, two"\nq2,False,2,s\n')
    rows = list(iter_rows(resolve_parts(str(path))))
    assert [(n, r["question"], r["solution"]) for _, n, r in rows] == [(1, "q1", "line one\nline, two"), (2, "q2", "s")]


@pytest.mark.parametrize("name", ["t.csv.gz", "t.csv.zst", "t.jsonl.gz", "t.jsonl.zst"])
def test_compressed_files(tiny_path, tmp_path, name):
    import zstandard

    rows = [dict(ID=i, **_row(i)) for i in range(5)]
    if ".csv" in name:
        text = "ID," + HEADER + "".join(f"{r['ID']},{r['question']},{r['is_correct']},{r['answer']},{r['solution']}\n"
                                        for r in rows)
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    data = gzip.compress(text.encode()) if name.endswith(".gz") else zstandard.ZstdCompressor().compress(text.encode())
    (tmp_path / name).write_bytes(data)
    dm = _dm(tiny_path, test_files=str(tmp_path / name))
    dm.setup("test")
    assert [e["label"] for e in dm.test_examples] == [1, 0, 1, 0, 1]


def test_parquet_with_unexpected_dtypes(tiny_path, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"question": ["q one", "q two"], "is_correct": pa.array([1, 0], pa.int64()),
                      "answer": pa.array([3.0, 2.5], pa.float64()), "solution": ["s", "t"]})
    pq.write_table(table, tmp_path / "typed.parquet")
    rows = [r for _, _, r in iter_rows(resolve_parts(str(tmp_path / "typed.parquet")))]
    assert [clean_row(r, True)[0]["answer"] for r in rows] == ["3", "2.5"]
    dm = _dm(tiny_path, test_files=str(tmp_path / "typed.parquet"))
    dm.setup("test")
    assert [e["label"] for e in dm.test_examples] == [1, 0]
    bad = pa.table({"question": pa.array([7], pa.int64()), "is_correct": [2], "answer": ["1"], "solution": ["s"]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: row 1, column question: non-text question \(7\)"):
        _dm(tiny_path, test_files=str(tmp_path / "bad.parquet")).setup("test")


def test_mixed_format_glob_and_folder_without_data(tmp_path):
    from mathverify.data.synthetic import write_rows

    for i, suffix in enumerate([".csv", ".jsonl", ".parquet"]):
        write_rows(tmp_path / "data" / f"part{i}{suffix}", 4, seed=i)
    (tmp_path / "data" / "README.txt").write_text("not data")
    rows = list(iter_rows(resolve_parts(str(tmp_path / "data" / "*"))))
    assert len(rows) == 12 and {Path(name).suffix for name, _, _ in rows} == {".csv", ".jsonl", ".parquet"}
    with pytest.raises(DataError, match=r"no \.csv/\.jsonl/\.json/\.parquet file matches .*README\.txt"):
        resolve_parts(str(tmp_path / "data" / "*.txt"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("x")
    with pytest.raises(DataError, match="folder holds no .csv/.jsonl/.json/.parquet files"):
        resolve_parts(str(tmp_path / "docs"))


def test_hub_name_offline_and_not_cached_is_one_fast_line(monkeypatch, tmp_path):
    import datasets  # imported first: the time below is the lookup, not the import

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        list(iter_rows(resolve_parts("ad6398/nyu-dl-teach-maths-comp")))
    assert time.perf_counter() - start < 5
    assert "not in the datasets cache" in _one_line(err) and "ad6398/nyu-dl-teach-maths-comp" in str(err.value)


# ----- rows ----------------------------------------------------------------------------------
def test_null_nan_empty_and_non_text_fields_list_the_first_rows(tiny_path, tmp_path):
    rows = [_row(0, question=None), _row(1, solution=float("nan")), _row(2, question=""),
            _row(3, solution="   \n"), _row(4, question=12), _row(5, solution=["a", "b"]), _row(6, answer=None),
            _row(7)]
    path = tmp_path / "nulls.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json writes NaN as a bare NaN
    dm = _dm(tiny_path, predict_files=str(path))
    with pytest.raises(DataError) as err:
        dm.setup("predict")
    text = _one_line(err)
    assert text.startswith("7 bad row(s)") and text.endswith("(and 2 more)")
    for expected in ["row 1, column question: empty question (None)", "row 2, column solution: empty solution (nan)",
                     "row 3, column question: empty question ('')", "row 4, column solution: empty solution",
                     "row 5, column question: non-text question (12)"]:
        assert f"nulls.jsonl: {expected}" in text


@pytest.mark.parametrize("value", [True, 1, 1.0, "True", " yes ", "Y", "t", "1", "TRUE"])
def test_accepted_true_spellings(value):
    assert parse_label(value) is True


@pytest.mark.parametrize("value", [None, float("nan"), 2, -1, "", "maybe", "correct", "1.5", [1]])
def test_unknown_label_spellings_are_refused(value):
    with pytest.raises(LabelError):
        parse_label(value)


def test_numpy_labels():
    import numpy as np

    assert parse_label(np.bool_(False)) is False and parse_label(np.int64(1)) is True


@pytest.mark.parametrize("ids, message", [
    (["0", "1", "1"], r"row 3, column ID: duplicate ID 1 \(first at row 2\)"),
    (["0", "x7", "2"], r"row 2, column ID: ID is not an integer \('x7'\)"),
    (["0", "1.5", "2"], r"row 2, column ID: ID is not an integer"),
    (["0", "", "2"], r"row 2, column ID: ID is not an integer \(''\)"),
])
def test_bad_ids_in_predict_file(tiny_path, write_csv, ids, message):
    rows = [dict(ID=i, **_row(k)) for k, i in enumerate(ids)]
    dm = _dm(tiny_path, predict_files=write_csv(rows, "test.csv"))
    with pytest.raises(DataError, match=r"test\.csv: " + message):
        dm.setup("predict")


def test_unicode_does_not_crash_tokenization(tiny_path, encoder, tmp_path):
    texts = ["emoji 😀🧮 ok", "مرحبا بالعالم RTL \u200f mark", "e\u0301 combining a\u0308", "nul \x00 byte",
             "lone \ud800 surrogate", "LaTeX $\\frac{1}{2}$ and ```python\nprint(1)\n```"]
    rows = [dict(ID=i, **_row(i, question=t + f" {i}", solution=t)) for i, t in enumerate(texts)]
    # json.dumps escapes the lone surrogate as \ud800, as a real JSON file would carry it.
    path = tmp_path / "uni.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dm = _dm(tiny_path, predict_files=str(path))
    dm.setup("predict")
    assert len(dm.predict_examples) == len(texts)
    assert sum(len(b["ids"]) for b in _stream(encoder, str(path), num_batches=2, batch_size=3)) == 6


def test_non_utf8_bytes_and_bom_in_csv(tiny_path, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"caf\xe9 question,True,1,s\n")
    rows = [r for _, _, r in iter_rows(resolve_parts(str(path)))]
    assert rows[0]["question"] == "caf\ufffd question"  # BOM dropped, bad byte replaced


def test_one_megabyte_solution_is_fast_and_keeps_the_end(tiny_path, write_csv, tokenizer):
    solution = "step " * 200_000 + "so the answer is \\boxed{42}"
    dm = _dm(tiny_path, predict_files=write_csv([dict(ID=0, **_row(0, solution=solution))]), max_length=256)
    start = time.perf_counter()
    dm.setup("predict")
    assert time.perf_counter() - start < 10
    ids = dm.predict_examples[0]["input_ids"]
    assert len(ids) == 256
    assert "\\boxed{42}" in tokenizer.decode(ids[-60:]) and tokenizer.decode(ids).endswith("(True/False only):")


def test_solution_alone_longer_than_max_length(encoder, tokenizer):
    row = {"question": "?", "answer": "1", "solution": " ".join(str(i) for i in range(3000)) + " END"}
    (ids,), cut = encoder.encode([row])
    assert cut == 1 and len(ids) == encoder.max_length
    text = tokenizer.decode(ids)
    assert "Math Question" in text and "END" in text and text.endswith("(True/False only):")


def test_validation_split_skips_bad_training_rows(tiny_path, tmp_path):
    rows = [_row(i) for i in range(40)] + [_row(40, question=5), _row(41, is_correct="maybe")]
    path = _jsonl(tmp_path / "train.jsonl", rows)
    dm = _dm(tiny_path, train_files=path, val_size=0.99, val_scan_rows=100)
    dm.setup("fit")
    assert len(dm.val_examples) >= 30 and sum(dm.val_skipped.values()) >= 1


# ----- config: one line before any weight loads -----------------------------------------------
def _no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("model weights were loaded before the error")

    monkeypatch.setattr("mathverify.model.module.load_causal_lm", refuse)


def _fit(tmp_path, tiny_path, *extra):
    return ["fit", "--logs_dir", str(tmp_path / "logs"), "--trainer.accelerator", "cpu",
            "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
            "--model.backbone", tiny_path, "--data.train_files", "synthetic:60:0", "--data.val_size", "8",
            "--data.val_scan_rows", "60", *extra]


@pytest.mark.parametrize("extra, error, message", [
    (("--model.lora_r", "0"), ValueError, "lora_r must be >= 1, got 0"),
    (("--model.lora_alpha", "-1"), ValueError, "lora_alpha must be > 0"),
    (("--data.batch_size", "0"), ValueError, "batch_size must be >= 1, got 0"),
    (("--data.eval_batch_size", "0"), ValueError, "eval_batch_size must be a whole number >= 1 or 'auto', got 0"),
    (("--model.max_length", "70"), ValueError, "leaves no room for question and solution"),
    (("--model.positive_label", "Yes", "--model.negative_label", "Yeah"), ValueError, "share their first token"),
])
def test_impossible_settings_fail_before_weights(tmp_path, tiny_path, monkeypatch, extra, error, message):
    from mathverify.cli import cli_main

    _no_weights(monkeypatch)
    with pytest.raises(error) as err:
        cli_main(_fit(tmp_path, tiny_path, *extra))
    assert message in _one_line(err)


@pytest.mark.parametrize("extra, key", [(("--model.lora_rr", "4"), "lora_rr"), (("--model.lora_r", "four"), "lora_r")])
def test_unknown_keys_and_wrong_types_exit_2(tmp_path, tiny_path, monkeypatch, capsys, extra, key):
    from mathverify.cli import cli_main

    _no_weights(monkeypatch)
    with pytest.raises(SystemExit) as err:
        cli_main(_fit(tmp_path, tiny_path, *extra))
    assert err.value.code == 2 and key in capsys.readouterr().err


def test_bad_predict_file_fails_before_weights(tmp_path, tiny_path, monkeypatch, write_csv):
    from mathverify.cli import cli_main

    _no_weights(monkeypatch)
    path = write_csv([dict(ID=0, **_row(0)), dict(ID=0, **_row(1))], "test.csv")
    with pytest.raises(DataError, match=r"test\.csv: row 2, column ID: duplicate ID 0"):
        cli_main(["predict", "--logs_dir", str(tmp_path / "logs"), "--trainer.accelerator", "cpu",
                  "--model.backbone", tiny_path, "--data.predict_files", path, "--submission", str(tmp_path / "s.csv")])
    assert not (tmp_path / "s.csv").exists()


# ----- check-data ----------------------------------------------------------------------------
def test_check_data_reports_counts_lengths_and_steps(tmp_path, tiny_path, capsys):
    from mathverify.cli import cli_main
    from mathverify.data.synthetic import write_rows

    path = write_rows(tmp_path / "train.csv", 300, seed=2)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("q,maybe,1,s\n,True,1,s\nq,True,1\n")
    with pytest.raises(SystemExit) as stopped:  # bad rows: a non-zero exit status a script can stop on
        cli_main(["check-data", str(path), "--backbone", tiny_path, "--max-length", "192",
                  "--batch-size", "4", "--accumulate", "5"])
    assert stopped.value.code == 3
    out, err = capsys.readouterr()
    assert err.strip() == "mathverify check-data: 3 bad row(s) of 303: exit status 3"
    assert "rows: 303\nusable rows: 300\nbad rows: 3" in out
    for reason in ("unreadable label: 1", "empty question: 1", "wrong CSV field count: 1"):
        assert reason in out
    last_line = path.read_text(encoding="utf-8").count("\n")  # solutions span lines: rows != lines
    assert f"train.csv: row 303: line {last_line} has 3 fields, header has 4" in out
    assert "labels: False" in out and "True" in out
    assert "questions:" in out and "distinct" in out
    assert "p50" in out and "p99" in out and "truncated:" in out
    assert "optimizer steps per epoch at 4 x 5 x 1 device(s): 15" in out


def test_check_data_rows_limit_and_bad_input(tmp_path, tiny_path, capsys):
    from mathverify.data.check import main

    assert main(["synthetic:500:1", "--backbone", tiny_path, "--rows", "50", "--max-length", "256"]) == 0
    assert "rows: 50\n" in capsys.readouterr().out
    assert main([str(tmp_path / "nope.csv"), "--backbone", tiny_path]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv: no such file" in err
