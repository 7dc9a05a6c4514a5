"""Fit's start-up state: computed once, then taken from a checkpoint, the cache or rank 0.

Before its first step a fresh ``fit`` reads the training files for the validation split (the
row index or question keys, then the chosen rows) and again for the index pass (the evidence
index, the seen view's rows). The result (``StartupState``: the validation rows and rule, the
seen rows, the index) depends only on the files' contents, five settings and the code, so:

- a resumed fit takes it from its checkpoint (``take_startup_state``);
- a fresh fit takes it from ``$MATHVERIFY_CACHE/startup``, keyed by the files' identities (path,
  size, modification time; a dataset's fingerprint), the settings and a digest of this package's
  source, when an earlier fresh start saved it (a sweep's trials, a re-run);
- under DDP rank 0 loads or computes it and broadcasts it: the other ranks read nothing.

What is stored is the JSON a checkpoint holds (validation rows' text, about 2 KB a row; the
evidence index, about 130 MB per million training rows), as two text files per key; the newest
``KEEP`` keys are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from collections import Counter
from dataclasses import replace
from typing import Optional

import torch

from mathverify.data.stream import ValidationRule
from mathverify.data.index_pass import HeldOutRow
from mathverify.evidence.index import EvidenceIndex

KEEP = 8
SETTINGS = ("val_size", "val_scan_rows", "val_seen_size", "val_seen_max_rows", "evidence")
_CODE: list[str] = []


def _code_digest() -> str:
    """A digest of this package's source: another version computes another state."""
    if not _CODE:
        digest = hashlib.sha1()
        package = Path(__file__).resolve().parents[1]  # mathverify/
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
        _CODE.append(digest.hexdigest())
    return _CODE[0]


def _identity(part) -> list:
    if part.kind in ("csv", "json", "parquet"):
        stat = os.stat(part.arg)
        return [part.kind, os.path.abspath(part.arg), stat.st_size, stat.st_mtime_ns]
    if part.kind in ("hub", "arrow"):
        from mathverify.data.sources import arrow_dataset

        data = arrow_dataset(part)
        return [part.kind, data._fingerprint, len(data), [f["filename"] for f in data.cache_files]]
    return [part.kind, part.rows, part.seed, part.test_layout]  # synthetic: the code digest covers the generator


def startup_key(hparams) -> str:
    """What the start-up state is computed from, as one digest."""
    from mathverify.data.sources import resolve_parts

    files = {name: [_identity(p) for p in resolve_parts(hparams[name])] if hparams[name] else None
             for name in ("train_files", "val_files")}
    settings = {name: hparams[name] for name in SETTINGS}
    text = json.dumps([files, settings, _code_digest()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _folder() -> Path:
    from mathverify.model.backbone import cache_root

    return cache_root() / "startup"


def load_cached(key: str) -> Optional[tuple[str, Optional[str]]]:
    """(start-up JSON, evidence index JSON or None) saved under ``key``, or None."""
    folder = _folder()
    try:
        startup = (folder / f"{key}.startup.json").read_text(encoding="utf-8")
        index_path = folder / f"{key}.index.json"
        index = index_path.read_text(encoding="utf-8") if index_path.exists() else None
        json.loads(startup)  # a damaged file is a miss, not an error
    except (OSError, ValueError):
        return None
    return startup, index


def save_cached(key: str, startup: str, index: Optional[str]) -> None:
    """Save a state under ``key`` (the index first: the start-up file's presence marks it whole)."""
    from mathverify.atomic import atomic_file

    folder = _folder()
    try:  # a cache only: a read-only or full disk costs the passes next time, nothing else
        folder.mkdir(parents=True, exist_ok=True)
        if index is not None:
            with atomic_file(folder / f"{key}.index.json", "w", encoding="utf-8") as handle:
                handle.write(index)
        with atomic_file(folder / f"{key}.startup.json", "w", encoding="utf-8") as handle:
            handle.write(startup)
        saved = sorted(folder.glob("*.startup.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in saved[KEEP:]:
            for path in (old, old.with_name(old.name.replace(".startup.", ".index."))):
                path.unlink(missing_ok=True)
    except OSError as err:
        print(f"mathverify: note: start-up state not cached ({err})", file=sys.stderr)


def broadcast_from_rank_zero(strategy, compute):
    """``compute()`` on rank 0, its result on every rank; an error there is raised on every rank
    (the others would otherwise wait in the broadcast for ever)."""
    result, error = None, None
    if strategy.global_rank == 0:
        try:
            result = compute()
        except Exception as err:  # re-raised below, after the others have heard of it
            error = err
    message = strategy.broadcast((result, None if error is None else f"{type(error).__name__}: {error}"), src=0)
    if error is not None:
        raise error
    if message[1] is not None:
        from mathverify.data.sources import DataError

        raise DataError(f"rank 0 failed at start-up: {message[1]}")
    return message[0]


class StartupMixin:
    """The data module's start-up state: taken from a checkpoint, the cache or rank 0, or computed
    (``_validation_examples`` and ``_index_pass`` of ``VerifyDataModule``) and shared."""

    def take_startup_state(self, state: dict) -> None:
        """``fit --ckpt_path``: the checkpoint's data state (the CLI hands it over before setup).

        Its ``startup`` part (validation rows and rule, the seen view's rows) replaces the
        validation split and the index pass over the training files; the evidence index comes
        back with the rest of the state. A checkpoint without it (older) reads the files again."""
        startup = state.get("startup")
        self._startup = json.loads(startup) if isinstance(startup, str) else None
        self._startup_origin = "the checkpoint"

    def _fresh_startup(self) -> None:
        """A fresh fit's start-up state: from the cache, else computed here and saved; under DDP
        only rank 0 does either and the others receive it."""
        hp, trainer = self.hparams, self.trainer
        ranks = getattr(trainer, "world_size", 1) > 1 and torch.distributed.is_initialized()

        def own():
            key = startup_key(hp) if hp.startup_cache else None
            cached = load_cached(key) if key else None
            if cached is not None:
                return (*cached, "the cache")
            self.val_examples = self._validation_examples()
            if hp.evidence or hp.val_seen_size > 0:
                self._index_pass()
            state = self._startup_json()
            if state is None:  # nothing read from the training files: nothing to share
                return None
            index = self._index_json()
            if key:
                save_cached(key, state, index)
            return state, index, "rank 0"

        payload = broadcast_from_rank_zero(trainer.strategy, own) if ranks else own()
        if payload is not None and self.val_examples is None:  # not computed in this process
            state, index, self._startup_origin = payload
            self._startup, self._startup_text = json.loads(state), state
            if index is not None:
                self._evidence_json, self.evidence_index = index, EvidenceIndex.from_json(index)

    def _index_json(self) -> Optional[str]:
        """The evidence index as JSON, serialized once (it never changes after setup)."""
        if self._evidence_json is None and self.evidence_index is not None:
            self._evidence_json = self.evidence_index.to_json()
        return self._evidence_json

    def _startup_json(self) -> Optional[str]:
        """The start-up state as JSON, serialized once (it is fixed after setup; every save reuses it)."""
        if self._startup_text is not None or (not self._index_pass_done and self._val_raw is None):
            return self._startup_text
        rule = self.validation
        self._startup_text = json.dumps({
            "val_rows": self._val_raw, "val_skipped": dict(getattr(self, "val_skipped", {}) or {}),
            "rule": {"fraction": rule.fraction, "digests": sorted(rule.digests), "held_out_rows": sorted(rule.held_out_rows)},
            "seen_rows": [list(r) for r in self.seen_rows], "index_pass_done": self._index_pass_done,
        }, default=str)
        return self._startup_text

    def _restore_startup(self, startup: dict) -> None:
        if self.hparams.val_files or startup.get("val_rows") is None:
            self.val_examples = self._validation_examples()  # a separate file: small, read again
        else:
            self._val_raw = [tuple(r) for r in startup["val_rows"]]
            self.val_examples = self._encode_checked(self._val_raw, need_label=True)
            self.val_skipped = Counter(startup.get("val_skipped", {}))
            rule = startup["rule"]
            self.validation = ValidationRule(fraction=rule["fraction"], digests=frozenset(rule["digests"]))
        self.validation = replace(self.validation, held_out_rows=frozenset(startup["rule"]["held_out_rows"]))
        if startup.get("index_pass_done"):
            self.seen_rows = [HeldOutRow(*r) for r in startup["seen_rows"]]
            self._index_pass_done = True  # the evidence index itself comes with the state
            self._add_seen_examples()
        print(f"mathverify: {len(self.val_examples)} validation rows and the evidence index taken from "
              f"{self._startup_origin} (no pass over the training files)", file=sys.stderr)
