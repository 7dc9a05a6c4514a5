"""Hub datasets and ``save_to_disk`` folders are read like local files: memory-mapped Arrow in
``datasets``' cache, a seeded whole-source shuffle with an exact seek, and offline from the cache."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mathverify.cli import cli_main
from mathverify.data.order import SHUFFLED, ReadOrder
from mathverify.data.sources import DataError, arrow_dataset, iter_rows, resolve_parts
from mathverify.data.stream import StreamPosition
from mathverify.data.synthetic import generate_rows
from test_cli import _fit_args
from test_order import _ids, _stream

ROOT = Path(__file__).resolve().parents[1]


def _sorted_rows(rows: int) -> list[dict]:
    return sorted(generate_rows(rows, seed=1), key=lambda r: r["question"])  # sorted by question, as data often is


def _saved(tmp_path: Path, rows: int, layout: str) -> str:
    """A ``save_to_disk`` folder: a Dataset, or a DatasetDict whose ``layout`` split holds the rows."""
    import datasets

    data = datasets.Dataset.from_list(_sorted_rows(rows))
    if layout == "dataset":
        data.save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    datasets.DatasetDict({"other": data.select(range(5)), layout: data}).save_to_disk(str(tmp_path / "dict"))
    return f"{tmp_path / 'dict'}:{layout}"


def _hub_cache(cache: Path, repo_id: str, rows: list[dict]) -> None:
    """Put ``rows`` into a ``datasets`` cache as ``load_dataset(repo_id)`` leaves it after a download
    (``NAMESPACE___NAME/default/0.0.0/HASH``: Arrow files and dataset_info.json)."""
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    source = cache.parent / "download.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(source))
    name = repo_id.split("/")[-1]
    builder = Parquet(cache_dir=str(cache / "build"), dataset_name=name, data_files={"train": str(source)})
    builder.download_and_prepare()
    built = glob.glob(str(cache / "build" / name / "default-*" / "0.0.0"))[0]
    target = cache / repo_id.replace("/", "___") / "default" / "0.0.0" / "0123456789abcdef"
    target.parent.mkdir(parents=True)
    shutil.move(built, target)
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "config_name": "default"}))
    shutil.rmtree(cache / "build")


@pytest.mark.parametrize("layout", ["dataset", "train", "test"])
def test_saved_folders_resolve_and_read_every_row(tmp_path, layout):
    spec = _saved(tmp_path, 30, layout)
    parts = resolve_parts(spec)
    assert [p.kind for p in parts] == ["arrow"] and parts[0].split == ("" if layout == "dataset" else layout)
    rows = list(iter_rows(parts))
    assert [r["question"] for _, _, r in rows] == [r["question"] for r in _sorted_rows(30)]
    assert [number for _, number, _ in rows] == list(range(1, 31))  # row numbers for messages
    if layout != "dataset":
        with pytest.raises(DataError, match=r"no split 'nope' .*it has other, "):
            resolve_parts(spec.rsplit(":", 1)[0] + ":nope")


def test_saved_folder_missing_a_column_is_one_line(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"question": ["q"], "answer": ["1"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"bad: missing column\(s\) solution; found question, answer"):
        resolve_parts(str(tmp_path / "bad"))


def test_saved_folder_is_read_shuffled_and_resumes_from_any_batch(encoder, tokenizer, tmp_path):
    path = _saved(tmp_path, 150, "dataset")
    assert ReadOrder(resolve_parts(path), 0, 1, seed=0).mode == SHUFFLED
    reference = list(_stream(encoder, tokenizer, path, num_batches=45))  # past the end of pass 1
    ids = _ids(reference)
    assert sorted(ids[:150]) == sorted(set(ids[:150])) and len(set(ids[:150])) == 150  # each row once a pass
    assert ids[:150] != sorted(ids[:150]) and reference[-1]["stream"]["position"]["order"] == SHUFFLED
    for k in (0, 7, 19, 37):
        position = StreamPosition(**reference[k]["stream"]["position"])
        resumed = list(_stream(encoder, tokenizer, path, start=position, num_batches=45 - k - 1))
        assert [b["ids"] for b in resumed] == [b["ids"] for b in reference[k + 1:]]


def test_saved_folder_ranks_read_disjoint_rows(encoder, tokenizer, tmp_path):
    path = _saved(tmp_path, 64, "train")
    seen = []
    for rank in (0, 1):
        batches = list(_stream(encoder, tokenizer, path, rank=rank, world_size=2, num_batches=8))
        assert all(int(i) % 2 == rank for b in batches for i in b["row_index"])
        seen.append(set(_ids(batches)))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 64


def test_fit_on_a_saved_folder_resumes_as_the_straight_run(tmp_path, tiny_path):
    path = _saved(tmp_path, 300, "dataset")
    extra = ("--data.train_files", path, "--model.evidence", "true",
             "--trainer.callbacks+=callbacks.evidence_warm_start.EvidenceWarmStart")
    rounds = "[{steps: 2}, {steps: 2}]"
    cli_main(_fit_args(tmp_path / "a", "r", *extra, rounds=rounds))
    cli_main(_fit_args(tmp_path / "b", "r", *extra, rounds=rounds, stop_after_each_round=True))
    cli_main(_fit_args(tmp_path / "b", "r", *extra, "--ckpt_path", "last", rounds=rounds))
    straight, resumed = (torch.load(tmp_path / run / "r" / "version_0" / "checkpoints" / "last.ckpt",
                                    weights_only=True) for run in ("a", "b"))
    assert resumed["global_step"] == straight["global_step"] == 4
    assert resumed["VerifyDataModule"]["position"] == straight["VerifyDataModule"]["position"]
    assert straight["VerifyDataModule"]["position"]["order"] == SHUFFLED
    for key, value in straight["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key], value, atol=1e-6), key


def _offline_env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST", "LOCAL_RANK", "WORLD_SIZE"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(cache), PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    return env


def test_cached_hub_dataset_trains_offline_in_shuffled_order(tmp_path, tiny_path):
    """``HF_HUB_OFFLINE=1`` with the dataset already in ``datasets``' cache: fit reads it from there
    (no network, no file-order note); a name that is not cached fails in one line."""
    cache = tmp_path / "hf-datasets"
    _hub_cache(cache, "someone/math-answers", list(generate_rows(300, seed=0)))
    args = _fit_args(tmp_path / "logs", "hub", "--data.train_files", "someone/math-answers",
                     rounds="[{steps: 2}]")
    done = subprocess.run([sys.executable, "-m", "mathverify", *args], env=_offline_env(cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cannot be read out of order" not in done.stderr
    saved = torch.load(tmp_path / "logs" / "hub" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2 and saved["VerifyDataModule"]["position"]["order"] == SHUFFLED

    args = _fit_args(tmp_path / "logs", "missing", "--data.train_files", "someone/not-downloaded")
    done = subprocess.run([sys.executable, "-m", "mathverify", *args], env=_offline_env(cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "someone/not-downloaded" in line]
    assert errors and "not in the datasets cache" in errors[-1], done.stderr[-2000:]


def test_an_opened_dataset_is_shared_not_reopened(tmp_path):
    part = resolve_parts(_saved(tmp_path, 10, "dataset"))[0]
    assert arrow_dataset(part) is arrow_dataset(part)


@pytest.mark.parametrize("stage,opened", [("fit", ["someone/train:train", "someone/val:dev"]),
                                          ("predict", ["someone/test:test"])])
def test_prepare_data_downloads_the_stage_hub_datasets_once(monkeypatch, tiny_path, stage, opened):
    """Lightning runs ``prepare_data`` on one process per machine before every rank's ``setup``:
    the hub datasets the command reads are downloaded there (local files are not touched)."""
    from types import SimpleNamespace

    import mathverify.data.datamodule
    from lightning.pytorch.trainer.states import TrainerFn

    calls = []
    monkeypatch.setattr(mathverify.data.datamodule, "arrow_dataset", lambda part: calls.append(part.arg))
    dm = mathverify.data.datamodule.VerifyDataModule(train_files="someone/train", val_files="someone/val:dev",
                                          predict_files="someone/test:test", backbone=tiny_path)
    dm.trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn(stage)))
    dm.prepare_data()
    assert calls == opened
