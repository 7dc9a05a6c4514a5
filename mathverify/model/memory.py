"""What a training step keeps alive for its backward pass, counted on any device (CPU included).

GPU peaks are measured with ``torch.cuda.max_memory_allocated``; a CPU has no such counter, so this
module counts tensors instead: every storage an operation creates while ``SavedActivations`` is
active is recorded (weak references only, so nothing is kept alive by the counting), and
``live_bytes`` sums those still alive. Called between the forward and the backward, that is exactly
the activation memory the backward needs (on a GPU it adds to the weights, gradients and optimizer
states). Parameters, buffers and the batch's own tensors are left out (they existed before).

It shows what gradient checkpointing buys: without it a Llama layer keeps ~20 tensors of the
hidden width per token for its backward (the MLP's three 14,336-wide ones on Llama-3-8B most of
all); with it only the layer's input [B, T, H] (``tests/test_memory.py`` holds this to a bound).
"""

from __future__ import annotations

import gc
import weakref
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class SavedActivations(TorchDispatchMode):
    """Records the storages created inside the ``with`` block (or between ``start`` and ``stop``).

    Args:
        existing: tensors that were there before (parameters, buffers, the batch): never counted,
            even when an operation returns a view of them (a transposed weight shares its storage).
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._existing = {t.untyped_storage().data_ptr() for t in existing}
        self._created: dict[int, weakref.ref] = {}  # storage address -> weak reference

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                address = storage.data_ptr()
                if not address or address in self._existing:
                    continue
                known = self._created.get(address)
                if known is None or known() is None:  # new, or an address freed and handed out again
                    self._created[address] = weakref.ref(storage)
        return out

    def start(self) -> "SavedActivations":
        self.__enter__()
        return self

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def live_bytes(self) -> int:
        """Bytes of the recorded storages still alive now (each storage once)."""
        gc.collect()
        total = 0
        for address, ref in self._created.items():
            storage = ref()
            if storage is not None and storage.data_ptr() == address:
                total += storage.nbytes()
        return total


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of ``module``: what ``SavedActivations(existing=...)`` should leave out."""
    return list(module.parameters()) + list(module.buffers())
