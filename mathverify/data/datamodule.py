"""The LightningDataModule: a streamed training set, a fixed validation set split by question,
and in-order test/predict sets."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from typing import Callable, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from mathverify.data.eval_batches import AUTO, EvalBatches, EvalBatchSize, checked_setting, plan_for
from mathverify.data.examples import checked_examples, clean_row
from mathverify.data.holdout import validation_rows
from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder
from mathverify.data.sharding import eval_sampler, rank_of
from mathverify.data.sources import DataError, arrow_dataset, iter_rows, resolve_parts
from mathverify.data.startup import StartupMixin
from mathverify.data.stream import StreamPosition, TrainStream, ValidationRule
from mathverify.errors import SettingsError
from mathverify.data.index_pass import build_index
from mathverify.evidence.index import EvidenceIndex, TrainingEvidence, attach_evidence
from mathverify.model.backbone import load_tokenizer

RoundPlan = Callable[[int], tuple[int, Optional[int]]]  # epoch -> (micro-batches, micro-batch size or None)


def refuse_placeholder_labels(examples: list[dict], source) -> None:
    """The contest's test split carries placeholder labels (all True): scoring it means nothing, and
    with one class there is no AUROC or F1 to report either. Refused in one line, before any weight loads."""
    labels = {e["label"] for e in examples}
    if len(examples) > 1 and len(labels) == 1:
        value = "True" if labels.pop() else "False"
        raise DataError(f"{source}: all {len(examples)} labels are {value}: placeholders (as in the contest's test "
                        "split) or one class only, so test scores would mean nothing; use predict for a submission, "
                        "or test on rows with both labels")


class StreamLoader(DataLoader):
    """The training loader. Its position lives in the data module's checkpoint state (restored
    before the loader is built); these two methods tell Lightning a mid-round resume is exact."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class VerifyDataModule(StartupMixin, pl.LightningDataModule):
    """Streams prompt-formatted, tokenized chunks of contest rows.

    Args:
        train_files: training rows: file, glob, folder, hub name, or ``synthetic:ROWS[:SEED]``.
        val_files: validation rows; if None, validation questions are split off ``train_files``.
        test_files: labelled rows for ``mathverify test``.
        predict_files: rows to predict (the contest test file); row order is kept.
        val_size: validation share of questions (float in (0, 1)) or number of rows (int >= 1).
        val_scan_rows: plain CSV/JSON-lines sources: a fractional ``val_size`` validates on
            ``val_size x val_scan_rows`` rows of its questions, sampled over the whole source (a row
            count takes its questions from the whole source). Other sources: the split is made among
            their first ``val_scan_rows`` rows.
        batch_size: training micro-batch size per device, and the most rows a micro-batch may hold:
            a ``StepRounds`` round with a larger ``batch_size`` is split to fit, with more accumulation
            (the same rows per optimizer step; the first knob after running out of memory).
        eval_batch_size: rows per validate/test/predict batch, or ``auto``: 16 on a CPU, and on a GPU as
            many as the free memory holds (``mathverify.data.eval_batches``).
        buffer_size: rows tokenized and shuffled together in the training stream.
        group_by_length: sort each buffer by length before cutting batches (less padding).
        num_workers: 0 (tokenize in the main process) or 1 (in a background worker).
        seed: seed of the stream's shuffles.
        max_bad_fraction: stop training when more than this share of the rows read so far is
            unreadable (a wrong file rather than a few bad rows); 1.0 turns the cap off.
        min_rows_for_bad_cap: rows to read before the cap applies (the first buffer can be noisy).
        evidence: give every row the evidence of the other rows of its question (answer agreement,
            known labels; ``mathverify.evidence.index``); linked from ``model.evidence``.
        val_seen_size: share of training rows held out (by a hash of their text) as the second
            validation view, ``val_seen/*``: rows whose question also has training rows; 0 = off.
        val_seen_max_rows: at most this many rows in that view.
        evidence_hide_labels: share of training rows that see no label of their question.
        evidence_thin_siblings: share of training rows that see a random subset of their siblings.
        evidence_partial_labels: share of the rows that see labels which see each sibling's label
            with a random rate (labelled and unlabelled siblings side by side, as in a seen test set).
        startup_cache: a fresh fit takes its start-up state (validation split, seen view, evidence
            index) from ``$MATHVERIFY_CACHE/startup`` when an earlier fresh start on the same files
            with the same settings saved it, and saves it otherwise (``mathverify.data.startup``).
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
        eval_batch_size: EvalBatchSize = AUTO,
        buffer_size: int = 1024,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        min_rows_for_bad_cap: int = 1000,
        val_seen_size: float = 0.02,
        val_seen_max_rows: int = 600,
        evidence_hide_labels: float = 0.5,
        evidence_thin_siblings: float = 0.5,
        evidence_partial_labels: float = 0.5,
        evidence: bool = False,
        startup_cache: bool = True,
        backbone: str = "tiny",
        prompt_template: str = SEED_TEMPLATE,
        positive_label: str = "True",
        negative_label: str = "False",
        max_length: int = 1024,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise SettingsError(f"batch_size must be >= 1, got {batch_size}")
        checked_setting(eval_batch_size)
        if num_workers not in (0, 1):
            raise SettingsError(f"num_workers must be 0 or 1 (the stream is one ordered sequence), got {num_workers}")
        if val_scan_rows < 1 or buffer_size < 1:
            raise SettingsError("val_scan_rows and buffer_size must be >= 1")
        shares = {"val_seen_size": val_seen_size, "evidence_hide_labels": evidence_hide_labels,
                  "evidence_thin_siblings": evidence_thin_siblings, "evidence_partial_labels": evidence_partial_labels}
        for key, value in shares.items():
            if not 0 <= value <= 1:
                raise SettingsError(f"{key} must be in [0, 1], got {value}")
        self.save_hyperparameters()
        self.position = StreamPosition()
        self._announced_plan = None  # the last budgeted evaluation plan said in the log
        self.stats = {"skipped": Counter(), "truncated": 0, "rows_seen": 0}
        self.round_plan: Optional[RoundPlan] = None  # set by callbacks.rounds.StepRounds
        self.encoder: Optional[PromptEncoder] = None
        self.validation = ValidationRule()
        self.val_examples: Optional[list[dict]] = None
        self.evidence_index: Optional[EvidenceIndex] = None  # built for fit, restored from checkpoints
        self._evidence_json: Optional[str] = None  # its checkpoint form, serialized once (it never changes)
        self.seen_rows: list[tuple] = []
        self._index_pass_done = False
        self._val_raw: Optional[list[tuple]] = None  # the split's validation rows as read (for checkpoints)
        self._startup: Optional[dict] = None  # start-up state from a checkpoint, the cache or rank 0
        self._startup_text: Optional[str] = None  # its checkpoint form, serialized once
        self._startup_origin = "the checkpoint"

    # ----- setup ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Hub datasets this command reads are downloaded into ``datasets``' cache here, once per
        machine (Lightning runs this on local rank 0 before any rank's ``setup``); every rank then
        memory-maps the same Arrow files (``sources.arrow_dataset``)."""
        fn = getattr(getattr(self.trainer, "state", None), "fn", None)
        stage = getattr(fn, "value", fn) or "fit"
        keys = {"fit": ("train_files", "val_files"), "validate": ("val_files", "train_files"),
                "test": ("test_files",), "predict": ("predict_files",)}.get(stage, ())
        for key in keys:
            for part in resolve_parts(self.hparams[key]) if self.hparams.get(key) else []:
                if part.kind == "hub":
                    arrow_dataset(part)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if self.encoder is None:
            tokenizer = load_tokenizer(hp.backbone, hp.trust_remote_code)
            self.encoder = PromptEncoder(tokenizer, hp.prompt_template, hp.positive_label, hp.negative_label, hp.max_length)
            self.pad_id = tokenizer.pad_token_id
        if stage == "fit" and self._startup is None and self.val_examples is None and hp.train_files:
            self._fresh_startup()  # the cache or rank 0, else computed here (mathverify.data.startup)
        if stage == "fit" and self._startup is not None and self.val_examples is None:
            self._restore_startup(self._startup)
        if stage in ("fit", "validate") and self.val_examples is None:
            self.val_examples = self._validation_examples()
        if stage == "fit" and not hp.train_files:
            raise DataError("fit needs data.train_files")
        if stage == "fit" and (hp.evidence or hp.val_seen_size > 0) and not self._index_pass_done:
            self._index_pass()
        if stage == "test":
            self.test_examples = self._fixed_examples(self._need("test_files"), need_label=True)
            refuse_placeholder_labels(self.test_examples, self.hparams.test_files)
        if stage == "predict":
            self.predict_examples = self._fixed_examples(self._need("predict_files"), need_label=False)

    def _index_pass(self) -> None:
        """One pass over the training files: the seen view's rows, and the evidence index (if on)."""
        hp = self.hparams
        index, self.seen_rows = build_index(
            resolve_parts(hp.train_files), self.validation.is_validation, hp.val_seen_size, hp.val_seen_max_rows)
        self._index_pass_done = True
        size = index.size()
        print(f"mathverify: {size['rows']} training rows of {size['questions']} questions "
              f"({size['answers']} distinct answers); {len(self.seen_rows)} rows held out for val_seen"
              + ("; evidence index built" if hp.evidence else ""), file=sys.stderr)
        if hp.evidence:
            self.evidence_index = index
        self.validation = replace(self.validation, held_out_rows=frozenset(r.row_key for r in self.seen_rows))
        self._add_seen_examples()

    def _add_seen_examples(self) -> None:
        """The seen view's rows join the validation examples (view 1, their vote in the index)."""
        if self.seen_rows:
            seen = self._encode_checked([(r.source, r.number, r.raw) for r in self.seen_rows], need_label=True)
            start = len(self.val_examples)  # row_index stays the position in val_examples
            for offset, example in enumerate(seen):
                example.update(row_index=start + offset, view=1, own_in="index")
            self.val_examples = self.val_examples + seen

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
        chosen, self.validation = validation_rows(parts, hp.val_size, hp.val_scan_rows)
        # Training-file policy: bad rows are skipped and counted (as the stream does), not fatal.
        checked = [(w, clean_row(w[2], need_label=True)[1]) for w in chosen]
        usable = [w for w, reason in checked if reason is None]
        self.val_skipped = Counter(reason for _, reason in checked if reason)
        if self.val_skipped:
            print(f"mathverify: validation split skipped {sum(self.val_skipped.values())} bad training row(s): "
                  f"{dict(self.val_skipped)}", file=sys.stderr)
        if not usable:
            raise DataError(f"{parts[0].name}: the split chose no usable validation rows; raise val_size or val_scan_rows")
        self._val_raw = usable
        return self._encode_checked(usable, need_label=True)

    def _fixed_examples(self, spec, need_label: bool) -> list[dict]:
        return self._encode_checked(list(iter_rows(resolve_parts(spec))), need_label)

    def _encode_checked(self, rows: list[tuple[str, int, dict]], need_label: bool) -> list[dict]:
        """Check every row up front (a bad row is an error, never skipped), then tokenize.

        Runs in ``setup``, before ``configure_model`` loads any weight, so a bad test file costs
        seconds (``examples.checked_examples``)."""
        return checked_examples(rows, self.encoder, need_label, solution_checks=self.hparams.evidence)

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
            evidence=self._training_evidence(),
        )
        # An own generator: otherwise creating the loader draws from the global RNG, and a resumed
        # run (which creates it after restoring RNG state) would see other dropout masks.
        generator = torch.Generator().manual_seed(hp.seed)
        return StreamLoader(stream, batch_size=None, num_workers=hp.num_workers, generator=generator)

    def _attach_evidence(self, examples: list[dict], complete: bool) -> None:
        """Each example's evidence: the saved index plus this file's own rows' votes, leave-one-out.

        ``complete``: test and predict see every labelled training row (``EvidenceIndex.complete``:
        validation questions' rows included); validation sees fit's index, which leaves them out.
        """
        if not self.hparams.evidence:
            return
        if self.evidence_index is None:
            raise SettingsError("evidence is on but there is no evidence index: the checkpoint was trained without "
                                "it (pass --model.evidence false) or fit has not built it")
        attach_evidence(examples, self.evidence_index.complete() if complete else self.evidence_index)

    def _training_evidence(self) -> Optional[TrainingEvidence]:
        hp = self.hparams
        if not hp.evidence:
            return None
        return TrainingEvidence(self.evidence_index, hp.seed, hp.evidence_hide_labels, hp.evidence_thin_siblings,
                                hp.evidence_partial_labels)

    def _fixed_loader(self, examples: list[dict], complete_index: bool) -> DataLoader:
        self._attach_evidence(examples, complete_index)
        # Longest first: similar lengths share a batch (little padding), an out-of-memory shows in
        # batch 1, and a batch's padded size is known from its first row (eval_batches). Every
        # example keeps its row_index, so the submission writer restores file order, and the
        # metrics do not depend on it.
        examples = sorted(examples, key=lambda e: len(e["input_ids"]), reverse=True)
        # Under DDP each rank takes its own rows, none repeated (see mathverify/data/sharding.py).
        rank, world_size = rank_of(self.trainer)
        sampler = eval_sampler(examples, rank, world_size)
        if sampler is not None:
            examples = [examples[i] for i in sampler]
        model = getattr(getattr(self.trainer, "lightning_module", None), "model", None)  # None: loaders built alone
        strategy = getattr(self.trainer, "strategy", None)
        plan = plan_for(self.hparams.eval_batch_size, model, strategy.root_device if strategy else torch.device("cpu"))
        if plan.budget_bytes is not None and plan != self._announced_plan:
            rank_zero_info(f"evaluation: {plan.describe()}")
            self._announced_plan = plan
        return DataLoader(EvalBatches(examples, plan, self.pad_id), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.val_examples, complete_index=False)

    def test_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.test_examples, complete_index=True)

    def predict_dataloader(self) -> DataLoader:
        return self._fixed_loader(self.predict_examples, complete_index=True)

    # ----- stream position: the batch that reaches the model moves it -------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        info = batch.pop("stream", None) if isinstance(batch, dict) else None
        if info is not None:
            self.position = StreamPosition(**info["position"])
            self.stats["skipped"].update(info["skipped"])
            self.stats["truncated"] += info["truncated"]
            self.stats["rows_seen"] += info["rows"]
            self._log_stream_stats()
            self._check_bad_cap()
        return batch

    def _log_stream_stats(self) -> None:
        trainer = self.trainer
        if getattr(trainer, "logger", None) is None or not trainer.is_global_zero:
            return
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            bad = sum(self.stats["skipped"].values())
            read = bad + self.stats["rows_seen"]
            trainer.logger.log_metrics({"data/bad_rows": bad, "data/bad_fraction": bad / max(read, 1),
                                        "data/truncated_rows": self.stats["truncated"]}, step=trainer.global_step)

    def _check_bad_cap(self) -> None:
        """Stop early when the training files are mostly unreadable (a wrong file, not a few bad rows)."""
        hp, skipped = self.hparams, self.stats["skipped"]
        bad = sum(skipped.values())
        total = bad + self.stats["rows_seen"]
        if hp.max_bad_fraction < 1 and total >= hp.min_rows_for_bad_cap and bad > hp.max_bad_fraction * total:
            top = ", ".join(f"{reason}: {n}" for reason, n in skipped.most_common(3))
            raise DataError(f"training stream: {bad} of {total} rows ({bad / total:.1%}) unreadable, over "
                            f"data.max_bad_fraction={hp.max_bad_fraction} ({top}); run `mathverify check-data` on the files")

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.stats["skipped"] and (self.trainer is None or self.trainer.is_global_zero):
            print(f"mathverify: training rows skipped by reason: {dict(self.stats['skipped'])}", file=sys.stderr)

    def state_dict(self) -> dict:
        """This rank's stream state, plus every rank's position when several processes train.

        Lightning builds the checkpoint on every rank (rank zero writes it), so the positions can
        be gathered here; each rank reads its own back on resume.
        """
        local = {"position": self.position.as_dict(), "skipped": dict(self.stats["skipped"]),
                 "truncated": self.stats["truncated"], "rows_seen": self.stats["rows_seen"]}
        shared = {}
        startup = self._startup_json()
        if startup is not None:  # JSON text, like the index: what a resumed fit needs before training
            shared["startup"] = startup
        if self.evidence_index is not None:  # JSON text: safe under weights_only loading; same on every rank
            shared["evidence_index"] = self._index_json()
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        if world == 1:
            return {**local, **shared, "world_size": 1}
        every_rank = [None] * world
        torch.distributed.all_gather_object(every_rank, local)
        return {**local, **shared, "world_size": world, "ranks": every_rank}

    def load_state_dict(self, state: dict) -> None:
        if "evidence_index" in state:  # every command: predict/validate/test never re-read training files
            self._evidence_json = state["evidence_index"]
            self.evidence_index = EvidenceIndex.from_json(self._evidence_json)
        if getattr(getattr(self.trainer, "state", None), "fn", "fit") != "fit":
            return  # validate/test/predict never read the stream: evaluate on any number of ranks
        saved_world = int(state.get("world_size", 1))
        world = self.trainer.world_size if self.trainer is not None else 1
        if saved_world != world:
            raise DataError(
                f"checkpoint's data stream was written by {saved_world} process(es), this run has {world}: "
                f"resume with the same number (e.g. --trainer.devices {saved_world}), or start a new run from "
                "the exported adapter"
            )
        mine = state["ranks"][self.trainer.global_rank] if saved_world > 1 else state
        self.position = StreamPosition(**mine["position"])
        self.stats = {"skipped": Counter(mine.get("skipped", {})), "truncated": mine.get("truncated", 0),
                      "rows_seen": mine.get("rows_seen", 0)}
