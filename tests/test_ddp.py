"""Multi-process DDP: real ``python -m mathverify`` runs with 2 CPU ranks (gloo) on the tiny backbone.

Each launch imports lightning + peft in two processes (~15 s each), so one test per quantization
chains fit -> validate -> predict and checks everything on what those runs leave behind:
(a) the ranks trained on disjoint rows, none repeated, the same number of batches each; (b) a
2-rank validate (and the fit's own 2-rank validation) equals a 1-rank validate of the same
checkpoint (run in this process, which saves an interpreter start): every row's P(True) and the
metrics; (c) a 2-rank predict writes every ID once, in order. The FSDP tests at the end need no
processes: Lightning 2.6 refuses FSDP without a GPU, so only its ingredients are checked.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Variables a parent launcher (torchrun, SLURM, an earlier DDP test) may leave behind; Lightning
# would take them as "I am one rank of an existing job" instead of launching its own ranks.
DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
             "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID")
ROUNDS = "[{steps: 3}, {steps: 2, accumulate: 2}]"  # one micro-batch size: positions stay row-exact
VAL = "synthetic:33:5"  # odd: rank 0 gets 17 rows (2 batches of 16), rank 1 gets 16 (1 batch)
TEST_ROWS = 37
DATA = ["--data.train_files", "synthetic:300:0", "--data.val_files", VAL, "--data.eval_batch_size", "16"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# Evidence of other solutions (one variant): the index rides in the checkpoint; fit also validates
# a "seen" view of held-out training rows (row_index from 33 on), which validate does not have.
EVIDENCE = ["--model.evidence", "true", "--data.val_seen_size", "0.2", "--data.val_seen_max_rows", "20",
            "--trainer.callbacks+=callbacks.evidence_warm_start.EvidenceWarmStart",
            "--trainer.callbacks+=callbacks.selection.SelectionMetrics"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in DIST_VARS and not k.startswith(("PL_", "LIGHTNING_"))}
    env["MATHVERIFY_CACHE"] = os.environ["MATHVERIFY_CACHE"]  # conftest's cache: tiny backbone built once
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])  # ddp_probe lives in tests/
    env["MASTER_ADDR"], env["MASTER_PORT"] = "127.0.0.1", str(_free_port())  # no EADDRINUSE between launches
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _cli_args(cwd: Path, args: tuple[str, ...], devices: int, probe: str | None) -> list[str]:
    extra = [*QUIET, "--trainer.accelerator", "cpu", "--trainer.devices", str(devices)]
    if devices > 1:
        extra += ["--trainer.strategy", "ddp"]
    if probe:
        extra += ["--trainer.callbacks+=ddp_probe.RankProbe", f"--trainer.callbacks.folder={cwd / 'probe' / probe}"]
    return [*args, *extra]


def _mathverify(cwd: Path, *args: str, devices: int = 2, probe: str | None = None) -> str:
    """Run ``python -m mathverify`` in a fresh process; Lightning starts the other ranks itself."""
    cmd = [sys.executable, "-m", "mathverify", *_cli_args(cwd, args, devices, probe)]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args[:1])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    # our metrics are gathered before logging: Lightning must not ask the user to sync them
    assert "sync_dist=True" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert "Loading weights:" not in done.stderr  # no progress bars in output that goes to a file
    print(f"[{args[0]} on {devices} rank(s): {time.monotonic() - started:.0f} s]", end=" ")
    return done.stderr


def _one_rank(cwd: Path, *args: str, probe: str | None = None) -> None:
    """A 1-rank reference run, in this process (one process, no DDP: no new interpreter to start)."""
    from mathverify.cli import cli_main

    previous = os.getcwd()
    os.chdir(cwd)  # --logs_dir is relative, as in the launches
    try:
        cli_main(_cli_args(cwd, args, devices=1, probe=probe))
    finally:
        os.chdir(previous)


def _one_rank_validate(cwd: Path, *args: str) -> list[dict]:
    _one_rank(cwd, "validate", *args, probe="val1")
    return _probes(cwd, "val1", "validate")


def _probes(cwd: Path, probe: str, stage: str) -> list[dict]:
    folder = cwd / "probe" / probe
    return [json.loads((folder / f"{stage}-rank{r}.json").read_text())
            for r in range(len(list(folder.glob(f"{stage}-rank*.json"))))]


def _fit(cwd: Path, quantization: str, *extra: str) -> Path:
    stderr = _mathverify(
        cwd, "fit", "--run_name", "ddp", "--logs_dir", "logs", "--trainer.log_every_n_steps", "1",
        "--trainer.callbacks+=callbacks.rounds.StepRounds", f"--trainer.callbacks.rounds={ROUNDS}",
        "--trainer.callbacks+=callbacks.metrics.VerificationMetrics",
        "--trainer.callbacks+=callbacks.checkpoint.RoundCheckpoint",
        "--model.max_length", "256", "--model.lora_r", "4", "--model.quantization", quantization,
        "--model.gradient_checkpointing", "true",  # non-reentrant: LoRA under DDP must not be "ready twice"
        "--data.batch_size", "4", "--data.buffer_size", "32", "--data.startup_cache", "false", *DATA, *extra,
        probe="fit",
    )
    # the start-up passes ran once, on rank 0; rank 1 received their result (mathverify.data.startup)
    assert stderr.count("training rows of") == 1 and stderr.count("taken from rank 0") == 1, stderr[-3000:]
    if "--model.evidence" in extra:  # the head's warm start too: fitted on rank 0, its weights sent
        assert stderr.count("evidence head fitted") == 1 and "sent to 1 other rank(s)" in stderr, stderr[-3000:]
    assert [p.name for p in (cwd / "logs" / "ddp").iterdir()] == ["version_0"]  # both ranks chose one folder
    return cwd / "logs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt"


def _check_training_rows(cwd: Path) -> None:
    ranks = _probes(cwd, "fit", "fit")
    assert len(ranks) == 2
    rows = [r["train_rows"] for r in ranks]
    expected = 3 * 4 + 2 * 2 * 4  # round 1: 3 steps x 4 rows; round 2: 2 steps x 2 micro-batches x 4
    assert [len(r) for r in rows] == [expected, expected]  # same batch count on each rank: no hang
    for rank, seen in enumerate(rows):
        assert len(set(seen)) == len(seen), f"rank {rank} trained on a row twice"
        assert all(i % 2 == rank for i in seen)  # the stream's shard: global row index % world size
    assert not set(rows[0]) & set(rows[1])


def _val_rows(probes: list[dict]) -> dict[int, float]:
    merged: dict[int, float] = {}
    for probe in probes:
        assert not merged.keys() & probe["val_rows"].keys(), "a validation row was scored on two ranks"
        merged.update({int(k): v for k, v in probe["val_rows"].items()})
    return merged


def _check_same_validation(one_rank: list[dict], many: list[dict], label: str) -> dict:
    """Per-row P(True) and every val/* metric of a multi-rank run equal the 1-rank run's."""
    reference, rows = _val_rows(one_rank), _val_rows(many)
    assert sorted(reference) == list(range(33)) and sorted(rows)[:33] == list(range(33)), label
    rows = {i: rows[i] for i in reference}  # fit's seen-view rows (33 on) have no 1-rank validate twin
    worst = max(abs(rows[i] - reference[i]) for i in reference)
    assert worst < 1e-5, f"{label}: P(True) differs by {worst}"
    metrics, expected = many[0]["metrics"], one_rank[0]["metrics"]
    assert all(p["metrics"] == metrics for p in many), f"{label}: ranks logged different metrics"
    assert expected.keys() <= metrics.keys() and "val/acc" in expected and "val/loss" in expected
    for key, value in expected.items():
        # val/loss off by the factor (rows / world size) / floor(rows / world size): Lightning's
        # sync_dist mean truncates the row count; the module must log the loss as a torchmetrics mean.
        assert metrics[key] == pytest.approx(value, abs=1e-5, nan_ok=True), f"{label}: {key}"
    return {"max_p_diff": worst, **{k: (expected[k], metrics[k]) for k in ("val/acc", "val/loss")}}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _check_submission(cwd: Path) -> None:
    run_dir = cwd / "logs" / "ddp" / "version_0"
    rows = _read_csv(run_dir / "submission.csv")
    assert [r["ID"] for r in rows] == [str(i) for i in range(TEST_ROWS)]  # every ID once, in file order
    probs = _read_csv(cwd / "p.csv")
    assert [p["ID"] for p in probs] == [r["ID"] for r in rows]
    assert all(0.0 <= float(p["p_true"]) <= 1.0 for p in probs)
    assert not list(run_dir.glob("*.part-rank*"))  # rank zero merged and removed the parts


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_ddp_fit_validate_predict(tmp_path, tiny_path, quantization):
    evidence = EVIDENCE if quantization == "none" else []
    head = [] if quantization == "none" else ["--model.head", "classifier"]  # each shipped head under DDP
    ckpt = _fit(tmp_path, quantization, *evidence, *head)
    _check_training_rows(tmp_path)
    evaluate = ["--logs_dir", "logs", "--ckpt_path", str(ckpt), *DATA,
                "--trainer.callbacks+=callbacks.metrics.VerificationMetrics", *evidence[-1:]]
    one_rank = _one_rank_validate(tmp_path, *evaluate)
    fit_val = _check_same_validation(one_rank, _probes(tmp_path, "fit", "fit"), "fit's 2-rank validation")
    if evidence:  # fit also scored the seen view's held-out training rows
        assert any(int(k) >= 33 for probe in _probes(tmp_path, "fit", "fit") for k in probe["val_rows"])
    report = {"fit-validation": fit_val}
    if quantization == "none":  # the same loader code; one quantization is enough for this launch
        _mathverify(tmp_path, "validate", *evaluate, probe="val2")
        report["validate"] = _check_same_validation(one_rank, _probes(tmp_path, "val2", "validate"), "2-rank validate")
    test_file = tmp_path / "test.csv"
    from mathverify.data.synthetic import write_rows

    write_rows(test_file, TEST_ROWS, seed=7, test=True)
    _mathverify(tmp_path, "predict", "--logs_dir", "logs", "--ckpt_path", str(ckpt),
                "--data.predict_files", str(test_file), "--probabilities", str(tmp_path / "p.csv"))
    _check_submission(tmp_path)
    if evidence:  # 2-rank predict = 1-rank predict: evidence comes from the whole file, before sharding
        _one_rank(tmp_path, "predict", "--logs_dir", "logs", "--ckpt_path", str(ckpt), "--data.predict_files",
                  str(test_file), "--probabilities", str(tmp_path / "p1.csv"), "--submission", str(tmp_path / "s1.csv"))
        two = {r["ID"]: float(r["p_true"]) for r in _read_csv(tmp_path / "p.csv")}
        one = {r["ID"]: float(r["p_true"]) for r in _read_csv(tmp_path / "p1.csv")}
        assert one.keys() == two.keys() and max(abs(one[i] - two[i]) for i in one) < 1e-5
        report["predict_max_p_diff"] = max(abs(one[i] - two[i]) for i in one)
    print(f"\n{quantization}: 1-rank vs 2-rank: {json.dumps(report)}")


def test_eval_sampler_splits_rows_without_repeats():
    from mathverify.data.sharding import eval_sampler

    assert eval_sampler(list(range(5)), 0, 1) is None  # one process: plain in-order loading
    shares = [list(eval_sampler(list(range(33)), rank, 2)) for rank in (0, 1)]
    assert [len(s) for s in shares] == [17, 16] and sorted(shares[0] + shares[1]) == list(range(33))
    with pytest.raises(ValueError, match="at least one"):
        eval_sampler([0], 0, 2)


# ----- FSDP: Lightning 2.6 refuses FSDPStrategy without a GPU, so check its ingredients here -----

FSDP_CONFIG = ROOT / "configs" / "llama3-8b-lora16-fsdp.yaml"


def test_fsdp_config_wraps_each_decoder_layer():
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    config = yaml.safe_load(FSDP_CONFIG.read_text())
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)  # what LightningCLI does with trainer.strategy
    strategy = parser.instantiate(parser.parse_object({"strategy": config["trainer"]["strategy"]})).strategy
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and set(policy._module_classes) == {LlamaDecoderLayer}
    assert strategy.kwargs["use_orig_params"] is True  # frozen base + trainable LoRA in one unit
    assert config["trainer"]["precision"] == "bf16-true"  # casts LoRA to bf16 too (next test)


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_bf16_true_gives_fsdp_one_dtype(tiny_path, quantization):
    """FSDP flattens each unit's weights into one tensor: they must share a dtype.

    dtype bfloat16 (+ quant_storage bfloat16 for 4-bit) makes the frozen weights bf16; peft keeps
    LoRA in fp32, and ``bf16-true`` casts it before Lightning wraps the model. The cast must leave
    the 4-bit storage intact: the output does not change.
    """
    import torch
    from lightning.pytorch.plugins.precision import FSDPPrecision

    from mathverify.model.module import VerifierModule

    storage = "bfloat16" if quantization == "4bit" else None
    module = VerifierModule(backbone="tiny", quantization=quantization, dtype="bfloat16", quant_storage=storage,
                            lora_r=4, max_length=256)
    module.configure_model()
    assert {p.dtype for p in module.parameters() if not p.requires_grad} == {torch.bfloat16}
    ids = torch.tensor([[5, 17, 99, 300, 42, 7]])
    args = (ids, torch.tensor([6]))  # (input_ids [1, 6], lengths [1])
    with torch.no_grad():
        before = module(*args).float()
        FSDPPrecision("bf16-true").convert_module(module)
        after = module(*args).float()
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert torch.allclose(before, after, atol=2e-2)  # LoRA B starts at zero: only the base speaks
