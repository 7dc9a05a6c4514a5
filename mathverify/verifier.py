"""A trained verifier from Python: P(True) of rows, decisions, best-of-N.

    from mathverify import Verifier

    verifier = Verifier.load("demo:best")        # RUN:best / RUN:last, a .ckpt file or an export folder
    verifier.score([{"question": q, "solution": s}])            # [P(True)]; answer: the last \\boxed{}
    verifier.judge(rows)                                         # [bool] at the stored thresholds
    verifier.best_of_n(q, [solution_1, solution_2, solution_3])  # BestOfN(index, solution, score, scores)

Loaded once (backbone, adapter, heads, prompt, thresholds, evidence index), then called many
times: no Lightning Trainer is built. ``score`` runs the path ``mathverify predict`` runs
(``examples.checked_examples``, ``evidence.attach_evidence``, longest-first batches sized as predict's,
``VerifierModule.forward``), so it returns the same numbers for the same rows.
Evidence is computed among the rows of one call (plus the saved index): score a question's
candidates in one call when their agreement should count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch

from mathverify.data.eval_batches import AUTO, EvalBatches, checked_setting, plan_for
from mathverify.data.examples import checked_examples
from mathverify.data.sources import DataError
from mathverify.errors import SettingsError
from mathverify.evidence.answers import last_boxed

EXPORT_META = "mathverify.json"


class VerifierError(ValueError):
    """A path that holds no usable verifier (one line, says what to do)."""


@dataclass(frozen=True)
class BestOfN:
    """The chosen candidate of one question: its position, solution text and P(True), and every
    candidate's P(True) in the order given (ties go to the first)."""

    index: int
    solution: str
    score: float
    scores: list[float]


class Verifier:
    """A loaded verifier. Build it with :meth:`load`."""

    def __init__(self, module, encoder, pad_id: int, index, batch_size: Union[int, str], source: str) -> None:
        self.module = module.eval()
        self.encoder = encoder
        self.pad_id = pad_id
        self.index = index  # the complete evidence index (every labelled training row), or None
        self.batch_size = batch_size
        self.source = source
        self.device = next(module.parameters()).device

    # ----- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Union[str, Path], device: Union[str, torch.device, None] = None,
             batch_size: Union[int, str, None] = None, logs_dir: str = "lightning_logs") -> "Verifier":
        """Load a verifier from an ``export`` folder, a checkpoint file or a short form
        (``RUN:best``, ``RUN:last``, resolved under ``logs_dir`` as the CLI does).

        Args:
            device: where the model runs (``"cpu"``, ``"cuda:0"``; default: the first GPU if there
                is one). 4-bit/8-bit checkpoints are loaded quantized, as trained.
            batch_size: rows per forward pass, or ``"auto"`` (the default, as ``mathverify predict``): 16 on a
                CPU, and on a GPU as many as its free memory holds (``mathverify.data.eval_batches``).
        """
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        folder = Path(path)
        if folder.is_dir():
            if not (folder / EXPORT_META).is_file():
                raise VerifierError(f"{folder}: a folder without {EXPORT_META}: give a `mathverify export` folder, "
                                    "a checkpoint file or RUN:best")
            return cls._from_export(folder, device, batch_size)
        return cls._from_checkpoint(str(path), device, batch_size, logs_dir)

    @classmethod
    def _from_checkpoint(cls, path: str, device, batch_size, logs_dir: str) -> "Verifier":
        from mathverify.cli import CheckpointError, resolve_ckpt_path
        from mathverify.errors import SettingsError
        from mathverify.evidence.index import EvidenceIndex
        from mathverify.export import load_module_from_checkpoint

        try:
            ckpt = resolve_ckpt_path(path, logs_dir, "mathverify", "load")
            module, state = load_module_from_checkpoint(ckpt, device)
        except (CheckpointError, SettingsError) as err:
            raise VerifierError(str(err)) from None
        index = None
        if module.hparams.evidence:
            index_json = state.get("VerifyDataModule", {}).get("evidence_index")
            if index_json is None:
                raise VerifierError(f"{ckpt}: the model weighs evidence but the checkpoint holds no evidence index")
            index = EvidenceIndex.from_json(index_json).complete()
        return cls._assemble(module, index, batch_size or AUTO, ckpt)

    @classmethod
    def _from_export(cls, folder: Path, device, batch_size) -> "Verifier":
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from mathverify.evidence.index import FEATURES, EvidenceIndex
        from mathverify.model.module import VerifierModule

        meta = json.loads((folder / EXPORT_META).read_text())
        hparams = meta.get("module")
        if not isinstance(hparams, dict):
            raise VerifierError(f"{folder}: exported by an older mathverify ({EXPORT_META} has no 'module' "
                                "settings): export the checkpoint again")
        module = VerifierModule(**{**hparams, "backbone": meta["base_model"]})
        module.build(device)
        set_peft_model_state_dict(module.model, load_file(folder / "adapter_model.safetensors", device=str(device)))
        if hparams.get("head") == "classifier":
            module.head.load_state_dict(load_file(folder / "classifier_head.safetensors", device=str(device)))
        index = None
        if hparams.get("evidence"):
            evidence = meta["evidence"]
            if list(evidence.get("features", [])) != list(FEATURES):
                raise VerifierError(f"{folder}: exported with {len(evidence.get('features', []))} evidence features, "
                                    f"this mathverify computes {len(FEATURES)}: export the checkpoint again from a "
                                    "fit of this version")
            module.evidence_head.load_state_dict(load_file(folder / evidence["head"], device=str(device)))
            index = EvidenceIndex.load(folder / evidence["index"])  # written complete by export
        module.threshold, module.threshold_seen = float(meta["threshold"]), float(meta["threshold_seen"])
        if "combination" in meta:  # exports before it: the identity (m + d), as they were trained
            module.combination.load_list(meta["combination"]["weights"])
        return cls._assemble(module, index, batch_size or AUTO, str(folder))

    @classmethod
    def _assemble(cls, module, index, batch_size: Union[int, str], source: str) -> "Verifier":
        from mathverify.data.prompt import PromptEncoder
        from mathverify.model.backbone import load_tokenizer

        hp = module.hparams
        try:
            checked_setting(batch_size, "batch_size")
        except SettingsError as err:
            raise VerifierError(str(err)) from None
        tokenizer = load_tokenizer(hp.backbone, hp.trust_remote_code)
        encoder = PromptEncoder(tokenizer, hp.prompt_template, hp.positive_label, hp.negative_label, hp.max_length)
        return cls(module, encoder, tokenizer.pad_token_id, index, batch_size, source)

    # ----- scoring --------------------------------------------------------------------------
    @property
    def thresholds(self) -> tuple[float, float]:
        """(rows whose question has no labelled rows in the index, rows whose question has some)."""
        return float(self.module.threshold), float(self.module.threshold_seen)

    def score(self, rows: Any) -> list[float]:
        """P(True) of each row, in the order given.

        ``rows``: a list of dicts, a pandas DataFrame or a ``datasets.Dataset`` with ``question``
        and ``solution`` (and ``answer``; where it is missing or empty, the content of the
        solution's last ``\\boxed{}`` is the answer). A bad row raises ``DataError``
        naming its position and column.
        """
        return [p for p, _ in self._score(rows)]

    def judge(self, rows: Any) -> list[bool]:
        """True where P(True) is above the row's stored threshold (``threshold_seen`` where the
        question has labelled rows in the evidence index, else ``threshold``)."""
        low, seen = self.thresholds
        return [p > (seen if labelled else low) for p, labelled in self._score(rows)]

    def best_of_n(self, question: str, solutions: list[Any]) -> BestOfN:
        """Score every candidate solution of ``question`` together (their agreement counts as
        evidence) and return the highest-scored. A candidate is a solution text or a dict with
        ``solution`` (and optionally ``answer``)."""
        if not solutions:
            raise DataError("best_of_n: no candidate solutions")
        rows = [{"question": question, **(s if isinstance(s, dict) else {"solution": s})} for s in solutions]
        scores = self.score(rows)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return BestOfN(best, rows[best]["solution"], scores[best], scores)

    def _score(self, rows: Any) -> list[tuple[float, bool]]:
        from mathverify.evidence.index import attach_evidence

        evidence = self.module.hparams.evidence
        examples = checked_examples(_numbered(as_records(rows)), self.encoder, need_label=False, solution_checks=evidence)
        if evidence:
            attach_evidence(examples, self.index)
        return self.run(examples)

    @torch.inference_mode()
    def run(self, examples: list[dict]) -> list[tuple[float, bool]]:
        """(P(True), has labelled siblings) of each example (``examples.checked_examples``, with
        ``evidence`` attached when the model weighs it), in the order given."""
        from mathverify.evidence.index import has_labelled_siblings

        if not examples:
            return []
        order = sorted(examples, key=lambda e: len(e["input_ids"]), reverse=True)  # as predict batches them
        plan = plan_for(self.batch_size, self.module.model, self.device)
        out: list[Optional[tuple[float, bool]]] = [None] * len(examples)
        for batch in EvalBatches(order, plan, self.pad_id):
            logits = self.module(batch["input_ids"].to(self.device), batch["lengths"].to(self.device),
                                 batch["shared_prefix"], batch.get("evidence"))
            probs = logits.float().softmax(-1)[:, 1].cpu().tolist()
            evidence = batch.get("evidence")
            labelled = (has_labelled_siblings(evidence).tolist() if evidence is not None else [False] * len(probs))
            for position, p, known in zip(batch["row_index"].tolist(), probs, labelled):
                out[position] = (p, bool(known))
        return out  # type: ignore[return-value]


def as_records(rows: Any) -> list[dict]:
    """Rows as a list of dicts: from a list/tuple of dicts, a pandas DataFrame or a ``datasets`` table."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas.DataFrame
        rows = rows.to_dict("records")
    elif hasattr(rows, "to_list") and hasattr(rows, "column_names"):  # datasets.Dataset
        rows = rows.to_list()
    elif isinstance(rows, dict):
        raise DataError("rows: give a list of rows (dicts), not one dict")
    rows = list(rows)
    if not rows:
        raise DataError("rows: empty: nothing to score")
    return rows


def with_boxed_answer(row: dict) -> dict:
    """The row, with ``answer`` taken from the solution's last ``\\boxed{}`` when it has none."""
    answer = row.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()) or answer != answer:  # NaN
        solution = row.get("solution")
        boxed = last_boxed(solution) if isinstance(solution, str) else None
        if boxed is not None and boxed.strip():
            return {**row, "answer": boxed}
    return row


def _numbered(rows: Iterable[Any]) -> list[tuple[str, int, dict]]:
    """(source name, row number, row) as ``checked_examples`` reads them; rows numbered from 0."""
    out = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"rows: row {number}: a {type(row).__name__}, not a dict with question and solution")
        out.append(("rows", number, with_boxed_answer(row)))
    return out
