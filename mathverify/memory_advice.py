"""What to change after running out of GPU memory: only what is not already on, in the order that helps.

The order (for training) follows where the memory of a QLoRA step goes (docs/memory.md):
activations first (gradient checkpointing keeps ~13x less of them per layer; then fewer rows per
micro-batch, which the rounds' accumulation makes up for, so the optimizer sees the same rows per
step), then weights (4-bit), then shorter rows (which cut solutions, so last), then the
allocator's fragmentation. Validation, test and prediction keep no activations: there the
evaluation batch goes first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class OutOfMemory(RuntimeError):
    """The run did not fit in the device's memory; the message says what to change (one line)."""


@dataclass(frozen=True)
class MemorySettings:
    """The settings that decide a run's memory, as they were when it ran out."""

    stage: str  # "train"; "validate" / "test" / "predict" (no backward); "load" (reading the weights)
    gradient_checkpointing: bool
    quantization: str  # none | 4bit | 8bit
    dtype: str  # float32 | bfloat16 | float16
    max_length: int
    micro_batch: int  # rows per training micro-batch as it ran (after any split of the round's)
    accumulate: int
    eval_batch_size: int | str  # rows, or "auto" (sized to the free memory: data.eval_batches)
    on_gpu: bool = True
    bf16_supported: bool = True
    alloc_conf: str = ""  # PYTORCH_CUDA_ALLOC_CONF / PYTORCH_ALLOC_CONF as set


def fitting_divisor(rows: int, most: int) -> int:
    """The largest divisor of ``rows`` that is at most ``most`` (1 at worst): the micro-batch a round's
    ``rows`` split into when ``data.batch_size`` is ``most`` (``callbacks.rounds.StepRounds``)."""
    return max(d for d in range(1, min(rows, max(1, most)) + 1) if rows % d == 0)


def smaller_micro_batch(rows: int) -> int:
    """The next micro-batch size down that divides ``rows`` (rows per step kept exactly): 4 -> 2, 6 -> 3, 3 -> 1."""
    return fitting_divisor(rows, rows - 1)


def loading_advice(quantization: str | None) -> str:
    """Out of memory before training started: only fewer bytes per weight, or a bigger device, can help."""
    if quantization == "4bit":
        return "out of GPU memory while loading the model; use a device with more memory"
    return "out of GPU memory while loading the model: try --model.quantization 4bit (~0.56 byte per weight), " \
           "or a device with more memory"


def advice(s: MemorySettings) -> str:
    """One line: where it ran out, what is already on, and the changes to try, most helpful first."""
    steps: list[str] = []
    already: list[str] = []
    training = s.stage == "train"
    if s.stage == "load":
        return loading_advice(s.quantization)
    if training:
        if s.gradient_checkpointing:
            already.append("gradient checkpointing")
        else:
            steps.append("--model.gradient_checkpointing true (each layer keeps only its input for the backward: "
                         "~13x less activation memory, for one more forward pass)")
        if s.micro_batch > 1:
            rows = smaller_micro_batch(s.micro_batch)
            more = s.accumulate * s.micro_batch // rows
            steps.append(f"--data.batch_size {rows} (the round's micro-batch {s.micro_batch} x {s.accumulate} runs as "
                         f"{rows} x {more}: the same {s.micro_batch * s.accumulate} rows per step)")
    elif s.eval_batch_size == "auto":
        steps.append("--data.eval_batch_size 16 (a fixed number of rows instead of batches sized to the free memory)")
    elif s.eval_batch_size > 1:
        steps.append(f"--data.eval_batch_size {max(1, s.eval_batch_size // 2)}")
    if s.quantization == "4bit":
        already.append("4-bit weights")
    else:
        steps.append("--model.quantization 4bit (weights take ~0.56 byte per parameter instead of "
                     f"{'~1' if s.quantization == '8bit' else '2-4'})")
    if s.dtype == "float32" and s.on_gpu:
        half = ("bfloat16", "bf16-mixed") if s.bf16_supported else ("float16", "16-mixed")
        steps.append(f"--model.dtype {half[0]} --trainer.precision {half[1]} (16-bit activations and weights)")
    if s.max_length > 512:
        steps.append(f"--model.max_length {s.max_length * 3 // 4} (longer rows then lose the middle of their solution)")
    if s.on_gpu and "expandable_segments:True" not in s.alloc_conf:
        steps.append("PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the environment (less fragmentation)")
    where = {"train": "training", "validate": "validating", "test": "testing", "predict": "predicting"}[s.stage]
    shape = (f"micro-batch {s.micro_batch} x {s.accumulate}" if training else
             "batches sized to the free memory" if s.eval_batch_size == "auto" else f"batch {s.eval_batch_size}")
    head = f"out of {'GPU ' if s.on_gpu else ''}memory while {where} ({shape}, rows up to {s.max_length} tokens"
    head += f"; already on: {', '.join(already)})" if already else ")"
    if not steps:
        return head + ": nothing left to turn down here; use a device with more memory"
    return head + ". Try, in this order: " + "; ".join(steps)


def settings_from_run(trainer, module, datamodule) -> MemorySettings:
    """The settings of a Lightning run (the CLI's trainer, ``VerifierModule`` and data module)."""
    import torch

    hp, data = module.hparams, datamodule.hparams
    running = getattr(trainer.state.stage, "value", None)  # train | sanity_check | validate | test | predict
    stage = {"sanity_check": "validate"}.get(running, running) or {"fit": "train"}.get(
        getattr(trainer.state.fn, "value", ""), "predict")
    if getattr(module, "model", None) is None:
        stage = "load"  # configure_model ran out while loading the weights
    micro, accumulate = int(data.batch_size), int(trainer.accumulate_grad_batches)
    rounds = next((c for c in trainer.callbacks if hasattr(c, "micro_batches")), None)  # StepRounds
    if rounds is not None:  # the round as it runs (after any split)
        micro, accumulate = rounds.micro_batches(trainer.current_epoch)
    on_gpu = trainer.strategy.root_device.type == "cuda"
    return MemorySettings(
        stage=stage, gradient_checkpointing=bool(hp.gradient_checkpointing), quantization=hp.quantization,
        dtype=hp.dtype, max_length=int(hp.max_length), micro_batch=micro, accumulate=accumulate,
        eval_batch_size=data.eval_batch_size if data.eval_batch_size == "auto" else int(data.eval_batch_size),
        on_gpu=on_gpu,
        bf16_supported=bool(on_gpu and torch.cuda.is_bf16_supported()),
        alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "") + "," + os.environ.get("PYTORCH_ALLOC_CONF", ""),
    )
