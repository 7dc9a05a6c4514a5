"""A callback for the multi-process tests (tests/test_ddp.py): each rank writes what it saw.

Passed to ``python -m mathverify`` with ``--trainer.callbacks+=ddp_probe.RankProbe`` (tests/ on
PYTHONPATH). It writes ``<folder>/<stage>-rank<r>.json`` with the training rows this rank consumed,
its stream position, the last validation epoch's per-row P(True) and the logged val/* metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback


class RankProbe(Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.train_rows: list[int] = []
        self.val_rows: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_rows.extend(int(i) for i in batch["row_index"])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.val_rows = {}  # keep only the latest epoch (fit validates once per round)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking:
            return
        for row, p in zip(batch["row_index"].tolist(), outputs["probs"].tolist()):
            if row in self.val_rows:
                raise AssertionError(f"validation row {row} seen twice on rank {trainer.global_rank}")
            self.val_rows[row] = p

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def _write(self, trainer) -> None:
        datamodule = trainer.datamodule
        record = {
            "rank": trainer.global_rank, "world_size": trainer.world_size,
            "train_rows": self.train_rows, "val_rows": self.val_rows,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
            "position": datamodule.position.as_dict(),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        stage = getattr(trainer.state.fn, "value", trainer.state.fn)
        path = self.folder / f"{stage}-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))
