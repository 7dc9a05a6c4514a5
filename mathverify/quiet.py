"""Start-up messages that tell a mathverify user nothing, silenced in one place, each with its reason.

Only messages whose cause is not the user's: advertisements, warnings about other libraries' use of
other libraries, and Lightning warnings about choices this project makes on purpose.
"""

from __future__ import annotations

import logging
import warnings

NOT_THE_USERS = (  # (start of the message, why it is silenced)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", "Lightning's own use of a torch API"),
    (r"`is_gradient_checkpointing` is deprecated", "peft reads an old transformers property"),
    (r"Your `IterableDataset` has `__len__` defined", "the stream's length is each rank's exact batch count of a round"),
    (r"Couldn't infer the batch indices fetched from your dataloader",
     "evaluation batches come whole from data.eval_batches; the submission writer orders rows by row_index"),
    (r"It is recommended to use `self.log\('(val|val_seen|test)/",
     "validation/test metrics are computed from every rank's rows, gathered before logging (sharding.EpochRows)"),
)
EVALUATING_A_FIT_CHECKPOINT = r"Be aware that when using `ckpt_path`"  # validate/predict need no training callbacks


class _NoTips(logging.Filter):
    """Lightning's "💡 Tip: ... try installing litlogger/litmodels" advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_startup(subcommand: str | None) -> None:
    import os
    import sys

    if not sys.stderr.isatty():
        # transformers' "Loading weights: 100%|..." bars: carriage-return noise in a log file
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # datasets' "Generating train split" / download bars: the same (the user's own setting wins)
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "datasets" in sys.modules and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1":
            sys.modules["datasets"].disable_progress_bars()
    for pattern, _why in NOT_THE_USERS:
        warnings.filterwarnings("ignore", message=pattern)
    if subcommand != "fit":  # on a resume the warning matters: a callback's state would be dropped
        warnings.filterwarnings("ignore", message=EVALUATING_A_FIT_CHECKPOINT)
    for name in ("lightning.pytorch", "lightning.fabric", ""):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoTips) for f in handler.filters):
                handler.addFilter(_NoTips())
