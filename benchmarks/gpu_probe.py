"""Callbacks the GPU config check (``gpu_configs.py``) adds to a shipped config's run.

Importable as ``gpu_probe.X`` with ``benchmarks/`` on PYTHONPATH; configured only through their init
arguments, as ``--trainer.callbacks+=`` or a YAML ``class_path`` gives them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

GIB = 2**30


class CapDeviceMemory(Callback):
    """Caps PyTorch's CUDA allocator at ``gib`` GiB before the model loads: a bigger GPU behaves as a
    smaller card would (a T4 leaves ~14.5 GiB to PyTorch). Beyond the cap, allocation fails with
    the usual out-of-memory error."""

    def __init__(self, gib: float) -> None:
        self.gib = gib

    def setup(self, trainer, pl_module, stage: str) -> None:  # before configure_model
        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(trainer.strategy.root_device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.gib * GIB / total), trainer.strategy.root_device)


class PeakMemory(Callback):
    """Writes the run's CUDA memory and training speed to ``path`` (JSON; ``{stage}`` in it becomes
    fit or predict) at the end of fit/predict: torch's peak allocated and reserved since the start,
    the allocated memory after the first and the largest training batch, and rows and real tokens
    per second over the training batches after the first quarter (start-up and warm-up left out)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.after_batch: list[float] = []
        self.batches: list[tuple[float, int, int]] = []  # (time at the batch's end, rows, real tokens)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.after_batch.append(torch.cuda.memory_allocated() / GIB)
        self.batches.append((time.perf_counter(), int(batch["input_ids"].shape[0]), int(batch["lengths"].sum())))

    def speed(self) -> dict:
        first = len(self.batches) // 4
        timed = self.batches[first + 1:]
        if not timed:
            return {}
        seconds = timed[-1][0] - self.batches[first][0]
        return {"rows_s": sum(b[1] for b in timed) / seconds, "tokens_s": sum(b[2] for b in timed) / seconds,
                "timed_batches": len(timed)}

    def _write(self, stage: str) -> None:
        if not torch.cuda.is_available():
            record = {"stage": stage, "device": "cpu", **self.speed()}
        else:
            record = {"stage": stage, "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                      "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
                      "after_first_batch_gib": self.after_batch[0] if self.after_batch else None,
                      "after_batch_max_gib": max(self.after_batch) if self.after_batch else None, **self.speed()}
        Path(self.path.format(stage=stage)).write_text(json.dumps(record))

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write("fit")

    def on_predict_end(self, trainer, pl_module) -> None:
        self._write("predict")
