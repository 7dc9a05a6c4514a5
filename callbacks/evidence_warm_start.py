"""Fit the evidence head on every labelled training row before the first step (seconds, CPU).

The head (``mathverify.model.heads.EvidenceHead``, a few hundred weights) would otherwise learn only
from the rows the run's steps read: 480 rows in a 60-step CPU run, too few to learn the rare
cases (an answer that meets a labelled-correct one, a sentence, a differently written equal
answer). The evidence index holds every labelled training row's question and answer, so the
head can be fitted to all of them, under the training augmentation (hidden labels, thinned
siblings), in full-batch steps that cost milliseconds. The text model then trains on top of it
as before. Skipped on resume (the head's weights come from the checkpoint) and without evidence.
Under DDP rank 0 fits the head and sends its weights to the other ranks (the table of a million
training rows takes tens of seconds to build: once, not once per rank).
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback


class EvidenceWarmStart(Callback):
    """Fits ``pl_module.evidence_head`` to the training rows' evidence at the start of ``fit``.

    Args:
        max_rows: at most this many training rows (a seeded sample; smaller files are taken
            whole, as are the real benchmark's, at most 8,400 labelled rows). The cost grows with
            max_rows x draws (the table): at 50,000 x 16 = 800,000 table rows the fit took about
            95 s of a fresh start on the 2-core CPU (2026-12-02: 35 s building the table, 300 steps
            over it); 12,500 x 16 = 200,000 rows for a few hundred weights.
        draws: augmentation draws per row (each a different hidden/thinned view of its siblings).
            16, not 4: rare label patterns (every labelled sibling wrong, an unlabelled one
            agreeing) then occur often enough to be learnt; on the real math seen case with 4
            solutions per question, 4 draws gave 0.922 and 16 gave 0.943.
        steps: full-batch Adam steps.
        lr: their learning rate at the start; it decays to 0 along a cosine. At a constant rate
            the fit ends wherever Adam's last oscillation leaves it, and the situations that few
            table rows stand for move most: on the built case of
            ``benchmarks/bench_group_calibration.py`` (training questions of 30 solutions, test
            questions of 4) the worst group missed its rate by 3.7 / 11.2 / 6.1 points over three
            seeds at a constant rate, 2.2 / 4.3 / 4.7 with the decay, at the same cost.
    """

    def __init__(self, max_rows: int = 12_500, draws: int = 16, steps: int = 300, lr: float = 0.05) -> None:
        if min(max_rows, draws, steps) < 1 or lr <= 0:
            raise ValueError("max_rows, draws and steps must be >= 1 and lr > 0")
        self.max_rows, self.draws, self.steps, self.lr = max_rows, draws, steps, lr

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and "FSDP" in type(trainer.strategy).__name__:  # before any weight loads
            from mathverify.errors import SettingsError

            raise SettingsError("callbacks.evidence_warm_start.EvidenceWarmStart does not run under FSDP (the head's "
                                "weights are sharded there): remove it from the callbacks; the head then learns "
                                "from the training steps alone")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        head = getattr(pl_module, "evidence_head", None)
        shown = trainer.datamodule._training_evidence() if trainer.datamodule is not None else None
        if head is None or shown is None or trainer.ckpt_path is not None or trainer.global_step > 0:
            return

        def fit():
            from mathverify.evidence.index import training_table

            table, labels = training_table(shown, self.max_rows, self.draws, trainer.datamodule.hparams.seed)
            if not table:
                return None
            device = next(head.parameters()).device
            x = torch.tensor(table, dtype=torch.float32, device=device)  # [N, F]
            y = torch.tensor(labels, dtype=torch.float32, device=device)  # [N]
            optimizer = torch.optim.Adam(head.parameters(), lr=self.lr)
            decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
            with torch.enable_grad():  # P = sigmoid(d): the text's margin is not known yet, 0
                for _ in range(self.steps):
                    optimizer.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), y)
                    loss.backward()
                    optimizer.step()
                    decay.step()
            weights = {k: v.detach().cpu() for k, v in head.state_dict().items()}
            return weights, len(labels) // self.draws, loss.item()

        ranks = getattr(trainer, "world_size", 1)
        if ranks > 1:
            from mathverify.data.startup import broadcast_from_rank_zero

            result = broadcast_from_rank_zero(trainer.strategy, fit)
            if result is not None and not trainer.is_global_zero:
                head.load_state_dict(result[0])  # rank 0's fit, to the bit
        else:
            result = fit()
        if result is not None and getattr(trainer, "is_global_zero", True):
            sent = f", sent to {ranks - 1} other rank(s)" if ranks > 1 else ""
            print(f"mathverify: evidence head fitted to {result[1]} training rows x {self.draws} "
                  f"draws, loss {result[2]:.4f}{sent}", file=sys.stderr)
