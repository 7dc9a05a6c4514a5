"""Out-of-memory advice: only what is not already on, most helpful first, the rounds' micro-batch named."""

from __future__ import annotations

import dataclasses

import pytest

from mathverify.cli import cli_main
from mathverify.memory_advice import MemorySettings, OutOfMemory, advice, smaller_micro_batch
from test_cli import _fit_args

T4 = MemorySettings(stage="train", gradient_checkpointing=True, quantization="4bit", dtype="float16", max_length=1024,
                    micro_batch=2, accumulate=12, eval_batch_size=8, bf16_supported=False)


def _steps(text: str) -> list[str]:
    return [step.split(" (")[0] for step in text.split("Try, in this order: ")[1].split("; ")]


def test_t4_config_is_told_to_lower_the_rounds_micro_batch_not_what_is_already_on():
    text = advice(T4)
    assert text.startswith("out of GPU memory while training (micro-batch 2 x 12, rows up to 1024 tokens; "
                           "already on: gradient checkpointing, 4-bit weights). Try, in this order: ")
    assert _steps(text) == ["--data.batch_size 1", "--model.max_length 768",
                            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the environment"]
    assert "runs as 1 x 24: the same 24 rows per step" in text
    assert "gradient_checkpointing true" not in text and "quantization" not in text


def test_everything_off_is_advised_in_the_order_that_helps():
    bare = dataclasses.replace(T4, gradient_checkpointing=False, quantization="none", dtype="float32", micro_batch=4,
                               accumulate=6, bf16_supported=True, alloc_conf="expandable_segments:True")
    assert _steps(advice(bare)) == ["--model.gradient_checkpointing true", "--data.batch_size 2",
                                    "--model.quantization 4bit", "--model.dtype bfloat16 --trainer.precision bf16-mixed",
                                    "--model.max_length 768"]
    done = dataclasses.replace(T4, micro_batch=1, accumulate=24, max_length=512, alloc_conf="expandable_segments:True")
    assert advice(done).endswith("nothing left to turn down here; use a device with more memory")


def test_prediction_is_told_the_evaluation_batch_first():
    text = advice(dataclasses.replace(T4, stage="predict", eval_batch_size=32))
    assert text.startswith("out of GPU memory while predicting (batch 32, rows up to 1024 tokens; already on: 4-bit weights)")
    assert _steps(text)[0] == "--data.eval_batch_size 16" and "--data.batch_size" not in text
    assert advice(dataclasses.replace(T4, stage="load", quantization="none")).startswith(
        "out of GPU memory while loading the model: try --model.quantization 4bit")


def test_smaller_micro_batch_divides_the_rows():
    assert [smaller_micro_batch(n) for n in (2, 3, 4, 6, 12)] == [1, 1, 2, 3, 6]


def test_an_out_of_memory_stop_in_fit_says_what_to_change_from_the_runs_own_settings(tmp_path):
    args = _fit_args(tmp_path / "logs", "oom", "--trainer.callbacks+=resume_helpers.RunOutOfMemory",
                     "--model.gradient_checkpointing", "true", "--data.batch_size", "4",
                     rounds="[{steps: 2, accumulate: 3, batch_size: 4}]")
    with pytest.raises(OutOfMemory) as caught:
        cli_main(args)
    text = str(caught.value)
    assert text.startswith("out of memory while training (micro-batch 4 x 3, rows up to 256 tokens; "
                           "already on: gradient checkpointing)")  # the CPU: no GPU-only advice
    assert _steps(text) == ["--data.batch_size 2", "--model.quantization 4bit"]
    assert "\n" not in text
