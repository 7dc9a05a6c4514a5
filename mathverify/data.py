"""The LightningDataModule: a streamed training set, a fixed validation set split by question,
and in-order test/predict sets."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Callable, Optional, Union

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from mathverify.backbone import load_tokenizer
from mathverify.examples import clean_row, collate_examples, row_error
from mathverify.prompt import SEED_TEMPLATE, PromptEncoder
from mathverify.sources import DataError, iter_rows, resolve_parts
from mathverify.split import question_digest, split_by_question
from mathverify.stream import StreamPosition, TrainStream, ValidationRule

RoundPlan = Callable[[int], tuple[int, Optional[int]]]  # epoch -> (micro-batches, micro-batch size or None)


class VerifyDataModule(pl.LightningDataModule):
    """Streams prompt-formatted, tokenized chunks of contest rows.

    Args:
        train_files: training rows: file, glob, folder, hub name, or ``synthetic:ROWS[:SEED]``.
        val_files: validation rows; if None, validation questions are split off ``train_files``.
        test_files: labelled rows for ``mathverify test``.
        predict_files: rows to predict (the contest test file); row order is kept.
        val_size: validation share of questions (float in (0, 1)) or number of rows (int >= 1).
        val_scan_rows: how many leading training rows the split draws validation rows from.
        batch_size: training micro-batch size per device (rounds may override it).
        eval_batch_size: batch size for validate/test/predict.
        buffer_size: rows tokenized and shuffled together in the training stream.
        group_by_length: sort each buffer by length before cutting batches (less padding).
        num_workers: 0 (tokenize in the main process) or 1 (in a background worker).
        seed: seed of the stream's shuffles.
        backbone: tokenizer source; linked from ``model.backbone``.
        prompt_template: linked from the model.
        positive_label: linked from the model.
        negative_label: linked from the model.
        max_length: linked from the model.
        trust_remote_code: linked from the model.
    """

    def __init__(
        self,
        train_files: Optional[Union[str, list[str]]] = None,
        val_files: Optional[Union[str, list[str]]] = None,
        test_files: Optional[Union[str, list[str]]] = None,
        predict_files: Optional[Union[str, list[str]]] = None,
        val_size: Union[float, int] = 0.05,
        val_scan_rows: int = 50_000,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        buffer_size: int = 1024,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        backbone: str = "tiny",
        prompt_template: str = SEED_TEMPLATE,
        positive_label: str = "True",
        negative_label: str = "False",
        max_length: int = 1024,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got batch_size={batch_size}, eval_batch_size={eval_batch_size}")
        if num_workers not in (0, 1):
            raise ValueError(f"num_workers must be 0 or 1 (the stream is one ordered sequence), got {num_workers}")
        if val_scan_rows < 1 or buffer_size < 1:
            raise ValueError("val_scan_rows and buffer_size must be >= 1")
        self.save_hyperparameters()
        self.position = StreamPosition()
        self.stats = {"skipped": Counter(), "truncated": 0, "rows_seen": 0}
        self.round_plan: Optional[RoundPlan] = None  # set by callbacks.rounds.StepRounds
        self.encoder: Optional[PromptEncoder] = None
        self.validation = ValidationRule()
        self.val_examples: Optional[list[dict]] = None

    # ----- setup ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        hp = self.hparams
        if self.encoder is None:
            tokenizer = load_tokenizer(hp.backbone, hp.trust_remote_code)
            self.encoder = PromptEncoder(tokenizer, hp.prompt_template, hp.positive_label, hp.negative_label, hp.max_length)
            self.pad_id = tokenizer.pad_token_id
        if stage in ("fit", "validate") and self.val_examples is None:
            self.val_examples = self._validation_examples()
        if stage == "fit" and not hp.train_files:
            raise DataError("fit needs data.train_files")
        if stage == "test":
            self.test_examples = self._fixed_examples(self._need("test_files"), need_label=True)
        if stage == "predict":
            self.predict_examples = self._fixed_examples(self._need("predict_files"), need_label=False)

    def _need(self, key: str):
        value = self.hparams[key]
        if not value:
            raise DataError(f"this command needs --data.{key}")
        return value

    def _validation_examples(self) -> list[dict]:
        hp = self.hparams
        if hp.val_files:
            examples = self._fixed_examples(hp.val_files, need_label=True)
            self.validation = ValidationRule(digests=frozenset(e["digest"] for e in examples))
            return examples
        if not hp.train_files:
            raise DataError("validation needs data.val_files or data.train_files to split from")
        parts = resolve_parts(hp.train_files)
        window = [(n, k, r) for (n, k, r), _ in zip(iter_rows(parts), range(hp.val_scan_rows))]
        digests = [question_digest(r.get("question") or "") for _, _, r in window]
        if isinstance(hp.val_size, float) and not float(hp.val_size).is_integer():
            self.validation = ValidationRule(fraction=float(hp.val_size))
        else:
            self.validation = ValidationRule(digests=frozenset(split_by_question(digests, int(hp.val_size))))
        chosen = [w for w, d in zip(window, digests) if self.validation.is_validation(d)]
        if not chosen:
            raise DataError(f"{parts[0].name}: the split chose no validation rows; raise val_size or val_scan_rows")
        return self._encode_checked(chosen, need_label=True)

    def _fixed_examples(self, spec, need_label: bool) -> list[dict]:
        return self._encode_checked(list(iter_rows(resolve_parts(spec))), need_label)

    def _encode_checked(self, rows: list[tuple[str, int, dict]], need_label: bool) -> list[dict]:
        """Check every row up front (a bad row is an error, never skipped), then tokenize."""
        clean, errors = [], []
        for name, number, raw in rows:
            row, reason, column = clean_row(raw, need_label)
            if row is None:
                errors.append(row_error(name, number, reason, column, raw))
                continue
            row["id"] = str(raw["ID"]) if "ID" in raw else None
            row["digest"] = question_digest(row["question"])
            clean.append(row)
        if errors:
            more = f" (and {len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
            raise DataError(f"{errors[0]}{more}")
        ids, _ = self.encoder.encode(clean) if clean else ([], 0)
        examples = []
        for index, (row, input_ids) in enumerate(zip(clean, ids)):
            example = {"input_ids": input_ids, "row_index": index, "digest": row["digest"],
                       "id": row["id"] if row["id"] is not None else str(index)}
            if need_label:
                example["label"] = row["label"]
            examples.append(example)
        return examples

    # ----- loaders --------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        num_batches, batch_size = None, hp.batch_size
        if self.round_plan is not None:
            num_batches, round_batch_size = self.round_plan(self.trainer.current_epoch)
            batch_size = round_batch_size or hp.batch_size
        stream = TrainStream(
            resolve_parts(hp.train_files), self.encoder, self.pad_id,
            rank=self.trainer.global_rank, world_size=self.trainer.world_size,
            validation=self.validation, batch_size=batch_size, buffer_size=hp.buffer_size,
            group_by_length=hp.group_by_length, seed=hp.seed,
            start=StreamPosition(**self.position.as_dict()), num_batches=num_batches,
        )
        return DataLoader(stream, batch_size=None, num_workers=hp.num_workers)

    def _fixed_loader(self, examples: list[dict]) -> DataLoader:
        collate = partial(collate_examples, pad_id=self.pad_id)
        return DataLoader(examples, batch_size=self.hparams.eval_batch_size, shuffle=False, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.val_examples)

    def test_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.test_examples)

    def predict_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.predict_examples)

    # ----- stream position: the batch that reaches the model moves it -------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        info = batch.pop("stream", None) if isinstance(batch, dict) else None
        if info is not None:
            self.position = StreamPosition(**info["position"])
            self.stats["skipped"].update(info["skipped"])
            self.stats["truncated"] += info["truncated"]
            self.stats["rows_seen"] += info["rows"]
        return batch

    def state_dict(self) -> dict:
        return {"position": self.position.as_dict(), "skipped": dict(self.stats["skipped"]),
                "truncated": self.stats["truncated"], "rows_seen": self.stats["rows_seen"]}

    def load_state_dict(self, state: dict) -> None:
        self.position = StreamPosition(**state["position"])
        self.stats = {"skipped": Counter(state.get("skipped", {})), "truncated": state.get("truncated", 0),
                      "rows_seen": state.get("rows_seen", 0)}
