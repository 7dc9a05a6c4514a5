"""Best-of-N at each validation: does the top-scored answer of each question hold up?"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from mathverify.evidence.selection import question_metrics


class SelectionMetrics(Callback):
    """Logs ``val/select_acc`` (share of validation questions whose highest-P(True) answer is
    right) beside ``val/vote_acc`` (majority voting), ``val/select_oracle`` (questions with any
    right answer) and ``val/agreement_acc`` (the no-model rule "True iff another solution agrees");
    after ``test``, the same under ``test/``.

    Computed on the unseen-questions view (view 0, all of a question's validation rows), from the
    rows every rank scored (``VerifierModule.epoch_outputs``) and the data module's examples.

    Args:
        prefix: metric name prefix after validation.
        prefix_test: metric name prefix after testing.
    """

    def __init__(self, prefix: str = "val", prefix_test: str = "test") -> None:
        self.prefix = prefix
        self.prefix_test = prefix_test

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(pl_module, trainer.datamodule.val_examples, self.prefix)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(pl_module, trainer.datamodule.test_examples, self.prefix_test)

    def _log(self, pl_module: pl.LightningModule, examples: list[dict], prefix: str) -> None:
        rows = pl_module.epoch_outputs()
        # in validation-file order, whatever order the ranks' rows were gathered in
        mine = sorted((i for i, view in enumerate(rows["view"].tolist()) if view == 0), key=lambda i: int(rows["row_index"][i]))
        picked = [examples[int(rows["row_index"][i])] for i in mine]
        values = question_metrics([float(rows["probs"][i]) for i in mine], [int(rows["labels"][i]) for i in mine],
                                  [e["digest"] for e in picked], [e["answer_key"] for e in picked])
        for name, value in values.items():
            pl_module.log(f"{prefix}/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
