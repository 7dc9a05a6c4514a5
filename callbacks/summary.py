"""Lightning's model summary without its FLOPs column: without an example input it counts nothing
and prints ``Total FLOPs: 0``. Training FLOPs are logged by ThroughputMonitor instead
(``VerifierModule.flops_per_batch``)."""

from __future__ import annotations

import logging

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class ParameterSummary(ModelSummary):
    """Layers, parameters (trainable, frozen, size) and train/eval modes, as Lightning prints them."""

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **summarize_kwargs) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes,
                                      0, *columns)
        log.info("\n" + "\n".join(line for line in table.splitlines() if not line.rstrip().endswith("Total Flops")))
