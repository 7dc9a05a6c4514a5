"""Evaluation batches sized to the device: as many rows per forward as its free memory holds.

Validate, test, predict, ``mathverify score`` and the ``Verifier`` sort rows longest first, so a
batch's padded size is its row count x its first row's length. ``eval_batch_size: auto`` (the
default) keeps 16 rows per batch on a CPU (the fastest there: ``benchmarks/bench_score.py``) and on
a GPU turns the memory left after the weights into a budget: a batch takes rows while their
no-grad forward (``forward_bytes``) fits ``MEMORY_SHARE`` of it, at most ``MAX_ROWS``. A number
keeps that many rows per batch anywhere.

Why it pays: on a GPU a forward of 16 rows (~6,400 tokens) leaves most of the chip idle, and an
evaluation forward keeps no activations for a backward, so an 8B model's batch of hundreds of rows
fits beside its weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal, Optional, Sequence, Union

import torch

from mathverify.data.examples import collate_examples
from mathverify.errors import SettingsError

AUTO = "auto"
CPU_ROWS = 16  # rows per forward on a CPU (and where the model's shape is unknown)
MAX_ROWS = 512  # the most rows a budgeted batch takes (past this a GPU gains nothing more)
MEMORY_SHARE = 0.6  # of the free memory: the rest is headroom (allocator slack, 4-bit dequantized weights)

EvalBatchSize = Union[int, Literal["auto"]]  # a number of rows, or "auto"


def checked_setting(value: EvalBatchSize, name: str = "eval_batch_size") -> EvalBatchSize:
    """``value`` if it is ``"auto"`` or a whole number >= 1, else a one-line error."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{name} must be a whole number >= 1 or 'auto', got {value!r}")
    return value


def forward_bytes(config, element_bytes: int, attn_implementation: str, length: int) -> int:
    """Peak memory one row of ``length`` tokens adds to a no-grad forward of a Llama-shaped decoder.

    Layers run one after another and nothing is kept for a backward, so the peak is inside one
    layer's MLP with LoRA: act(gate(x)), then up(x) as the frozen product, the adapter's output,
    its scaled copy and their sum (4 x intermediate), beside the embeddings, the residual stream, the
    normed input and the layer's other hidden-wide tensors (6 x hidden). Attention through
    ``sdpa``/flash keeps O(T) memory; ``eager`` adds the scores and their softmax (2 x heads x T
    per token). ``tests/test_eval_batches.py`` measures the peak on CPU at Llama-3-8B width: this
    count is 0-10 % above it.
    """
    per_token = (6 * config.hidden_size + 4 * config.intermediate_size) * element_bytes
    if attn_implementation == "eager":
        per_token += 2 * config.num_attention_heads * length * element_bytes
    return length * per_token


@dataclass(frozen=True)
class BatchPlan:
    """How evaluation rows (sorted longest first) are cut into batches."""

    max_rows: int
    budget_bytes: Optional[int] = None  # None: every batch takes max_rows rows
    row_bytes: Optional[Callable[[int], int]] = None  # length -> bytes one row of that length needs

    def cut(self, lengths: Sequence[int]) -> list[tuple[int, int]]:
        """[start, end) of each batch over ``lengths`` (longest first). A batch starts at its longest
        row and takes rows while rows x that row's cost fits the budget (one row at least)."""
        bounds, start = [], 0
        while start < len(lengths):
            rows = self.max_rows
            if self.budget_bytes is not None and self.row_bytes is not None:
                rows = min(rows, max(1, self.budget_bytes // max(1, self.row_bytes(int(lengths[start])))))
            end = min(len(lengths), start + rows)
            bounds.append((start, end))
            start = end
        return bounds

    def describe(self) -> str:
        if self.budget_bytes is None:
            return f"{self.max_rows} rows per batch"
        return f"batches sized to {self.budget_bytes / 2**30:.1f} GiB of free device memory (at most {self.max_rows} rows)"


def free_device_bytes(device: torch.device) -> int:
    """Memory a CUDA device can still hand out: free on the device plus what torch's allocator
    holds without using (it reuses that first)."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def plan_for(setting: EvalBatchSize, model, device: torch.device, free_bytes: Optional[int] = None) -> BatchPlan:
    """The plan for ``setting`` (rows, or ``"auto"``) with ``model`` (a Hugging Face causal LM, peft
    wrapped or not, or None) on ``device``. ``free_bytes`` overrides the device's own count."""
    if setting != AUTO:
        return BatchPlan(int(setting))
    config = getattr(model, "config", None)
    if (device.type != "cuda" and free_bytes is None) or not hasattr(config, "intermediate_size"):
        return BatchPlan(CPU_ROWS)
    budget = int(MEMORY_SHARE * (free_device_bytes(device) if free_bytes is None else free_bytes))
    element_bytes = model.get_input_embeddings().weight.element_size()  # the activations' dtype
    attn = getattr(config, "_attn_implementation", None) or "sdpa"
    return BatchPlan(MAX_ROWS, budget, partial(forward_bytes, config, element_bytes, attn))


class EvalBatches(torch.utils.data.IterableDataset):
    """Collated batches of ``examples`` (already sorted longest first) cut by ``plan``.

    An iterable of whole batches: Lightning loads it as it is (no sampler injected, also under DDP,
    where each rank passes only its own rows).
    """

    def __init__(self, examples: list[dict], plan: BatchPlan, pad_id: int) -> None:
        super().__init__()
        self.examples, self.pad_id = examples, pad_id
        self.bounds = plan.cut([len(e["input_ids"]) for e in examples])

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self):
        for start, end in self.bounds:
            yield collate_examples(self.examples[start:end], self.pad_id)
