"""What the other rows of a question say about a row's answer: agreement and known labels.

Generated data holds many solutions per question; right ones agree on one answer, wrong ones
scatter. The **index** counts, per question (``split.question_digest``) and canonical answer
(``answers.answer_key``), how many rows gave that answer (votes) and how many of them were
labelled correct / incorrect. It is built in one streaming pass over the training files, holds
only integers per (question, answer) and is saved with the run as JSON (no pickle).

A row's evidence never includes itself (leave-one-out): its own vote and label are taken out of
the counts before the features are computed, in training, validation and prediction alike.
Evaluation files (validation split, test, predict) add their own rows' votes, without labels,
as a **pool** beside the index: an unseen question still has its siblings' answers.

Each row also brings one bit of its own text (``mathverify.evidence.checks.flawed``: a wrong
arithmetic step, or an answer its body never reached), a feature of the row. The index counts
flawed rows beside the others (no text is stored), so the warm start's table
(:func:`training_table`) rebuilds every labelled row with its own bit. Siblings' flaws are
counted but not a feature: on the real cases (8 cases x 3 splits, the head fitted as the warm
start fits it, 2026-12-03) "how many agreeing rows are flawed" raised the test log-loss on MATH
while the row's own bit with the two fraction features lowered it on all 8.

Training shows evidence as prediction will see it (:class:`TrainingEvidence`): a seeded share
of rows sees its question's labels hidden (an unseen question has none), and a share sees its
siblings thinned at random (a test question has anywhere from no sibling to hundreds).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Iterable, Optional

from mathverify.errors import SettingsError
from mathverify.evidence.equality import all_classes, is_plain_number, is_symbolic, needs_symbolic

# answer key -> [votes, labelled correct, labelled incorrect, and the same three of its flawed rows only]
Counts = dict[str, list[int]]
WIDTH = 6
FLAWED = 3  # where the flawed rows' three counts start

FEATURES = (
    "log1p_same",  # other rows that reached this row's answer
    "log1p_other",  # other rows that reached another answer
    "share_same",  # same / all other rows (0 without siblings)
    "no_siblings",
    "same_is_0", "same_is_1", "same_is_2",  # the sharp steps of P(correct | agreeing siblings)
    "plurality_margin",  # (same - the largest other answer's votes) / (all other rows + 1)
    "log1p_known_correct_same",  # labelled rows with this answer: correct
    "log1p_known_incorrect_same",  # ... and incorrect
    "log1p_known_correct_other",  # labelled correct rows with another answer
    "log1p_known_incorrect_other",  # labelled incorrect rows with another answer (answers ruled out)
    "log1p_unlabelled_same",  # siblings with this answer whose label is not known (test rows, hidden labels)
    "log1p_unlabelled_other",  # ... with another answer
    "no_labels",  # no labelled sibling at all (an unseen question)
    "empty_answer",
    "other_form",  # the answer meets others (mathverify.evidence.equality) but is not its class's most voted spelling
    "prose_answer",  # a sentence, not a number or formula (strict graders mark these wrong)
    "own_flawed",  # this row's solution has a wrong arithmetic step or never reaches its answer (evidence.checks)
    "fraction_answer",  # a number that is not an integer (in integer-answer sets mostly wrong)
    "fraction_share_other",  # share of the other rows' votes that are non-integer numbers
)
N_FEATURES = len(FEATURES)
# Features that mark a defect of the row itself: the same row without it is never less likely right,
# so the head may only lower P(True) for them (``heads.EvidenceHead(lowering=)``). They are rare
# (math seen: 7 of 1,148 test rows spell an answer other than its class's most voted one); unbounded,
# the head learnt other_form from a handful of training rows that were all right and gave such rows
# P 0.82-0.96 where every labelled sibling was wrong (2026-12-04).
LOWERING = tuple(FEATURES.index(name) for name in ("other_form", "own_flawed"))
NO_LABELS = FEATURES.index("no_labels")


def has_labelled_siblings(evidence):
    """evidence [B, F] -> bool [B]: rows whose question has labelled siblings (the seen case).

    The row's own case decides its decision threshold (``VerifierModule.decision_thresholds``)."""
    return evidence[:, NO_LABELS] == 0
INDEX_FORMAT = "mathverify-evidence-3"  # 3: flawed-row counts (features: 21); 2: left_out rows, equal-answer aliases


def by_class(counts: Counts, aliases: Optional[dict[str, str]]) -> Counts:
    """``counts`` with the keys of one answer class (``mathverify.evidence.equality``) added together."""
    if not aliases:
        return counts
    return merged(*({aliases.get(k, k): c} for k, c in counts.items()))


def features(counts: Counts, key: str, aliases: Optional[dict[str, str]] = None, flawed: bool = False) -> list[float]:
    """The evidence vector of a row with answer ``key``; ``counts`` must exclude the row itself.

    ``aliases``: the question's equal-answer classes ({key: representative}); counts of one class
    count as one answer. ``flawed``: the row's own ``checks.flawed`` bit."""
    exact_key = key
    key = (aliases or {}).get(key, key)
    counts = by_class(counts, aliases)
    votes = {k: c[0] for k, c in counts.items() if c[0] > 0}
    same = votes.get(key, 0)
    total = sum(votes.values())
    other = total - same
    top_other = max((v for k, v in votes.items() if k != key), default=0)
    mine = counts.get(key, [0] * WIDTH)
    fraction_other = sum(v for k, v in votes.items() if k != key and _is_fraction(k))
    correct_other = sum(c[1] for k, c in counts.items() if k != key)
    incorrect_other = sum(c[2] for k, c in counts.items() if k != key)
    unlabelled_other = sum(c[0] - c[1] - c[2] for k, c in counts.items() if k != key)
    labelled = sum(c[1] + c[2] for c in counts.values())
    return [
        math.log1p(same), math.log1p(other), same / total if total else 0.0, float(total == 0),
        float(same == 0), float(same == 1), float(same == 2), (same - top_other) / (total + 1),
        math.log1p(mine[1]), math.log1p(mine[2]), math.log1p(correct_other), math.log1p(incorrect_other),
        math.log1p(max(0, mine[0] - mine[1] - mine[2])), math.log1p(max(0, unlabelled_other)), float(labelled == 0),
        float(key == ""), float(exact_key != key),
        float(bool(exact_key) and not is_plain_number(exact_key) and not is_symbolic(exact_key)),
        float(flawed), float(_is_fraction(key)), fraction_other / other if other else 0.0,
    ]


def _is_fraction(key: str) -> bool:
    return "/" in key and is_plain_number(key)


def without(counts: Counts, key: str, vote: int, correct: int, incorrect: int, flawed: bool = False) -> Counts:
    """A copy of ``counts`` with one row's own contribution taken out (leave-one-out)."""
    out = {k: list(c) for k, c in counts.items()}
    mine = out.setdefault(key, [0] * WIDTH)
    for start in (0, FLAWED) if flawed else (0,):
        mine[start] -= vote
        mine[start + 1] -= correct
        mine[start + 2] -= incorrect
    if min(mine) < 0:
        raise ValueError(f"leave-one-out of a row the counts do not hold (answer {key!r})")
    return out


def merged(*parts: Optional[Counts]) -> Counts:
    out: Counts = {}
    for part in parts:
        for key, c in (part or {}).items():
            mine = out.setdefault(key, [0] * WIDTH)
            for i in range(WIDTH):
                mine[i] += c[i]
    return out


def _halves(c: list[int]) -> tuple[list[int], list[int]]:
    """A key's counts as (rows not flawed, flawed rows), three counts each."""
    return [c[0] - c[3], c[1] - c[4], c[2] - c[5]], c[3:6]


def _joined(clean: list[int], flawed: list[int]) -> list[int]:
    return [clean[0] + flawed[0], clean[1] + flawed[1], clean[2] + flawed[2], *flawed]


class EvidenceIndex:
    """Per question digest: per answer key, [votes, labelled correct, labelled incorrect] and the
    same three counts of its flawed rows (``Counts``).

    ``questions`` is what ``fit`` trains and validates with. ``left_out`` holds the labelled rows
    that fit must not see as evidence but prediction should: the rows of validation questions
    (their votes and labels) and the labels of the rows held out for the seen view (their votes are
    already in ``questions``). ``complete()`` merges the two: the index of test and predict, which
    then knows every labelled training row.
    """

    def __init__(self, questions: Optional[dict[str, Counts]] = None,
                 left_out: Optional[dict[str, Counts]] = None,
                 aliases: Optional[dict[str, dict[str, str]]] = None) -> None:
        self.questions: dict[str, Counts] = questions or {}
        self.left_out: dict[str, Counts] = left_out or {}
        self.aliases: dict[str, dict[str, str]] = aliases or {}  # digest -> {key: representative}

    def find_equal_answers(self, workers: Optional[int] = None) -> None:
        """Equal-answer classes of every question (``mathverify.evidence.equality``), over all its answers
        (``left_out`` ones too: answers, not labels, so nothing leaks into validation)."""
        votes = {}  # only questions math-verify could merge: most hold plain-number answers only
        for digest in set(self.questions) | set(self.left_out):
            keys = set(self.questions.get(digest, ())) | set(self.left_out.get(digest, ()))
            if needs_symbolic(keys):
                both = merged(self.questions.get(digest), self.left_out.get(digest))
                votes[digest] = {k: c[0] for k, c in both.items()}
        self.aliases = all_classes(votes, workers)

    def add(self, digest: str, key: str, label: Optional[int], flawed: bool = False) -> None:
        """One row's vote, and its label unless ``label`` is None (a held-out or unlabelled row);
        ``flawed``: its solution's ``checks.flawed`` bit."""
        _count(self.questions.setdefault(digest, {}).setdefault(key, [0] * WIDTH), 1, label, flawed)

    def add_label(self, digest: str, key: str, label: int, flawed: bool = False) -> None:
        """A label for a row whose vote is counted already (a held-out row that trains after all)."""
        _count(self.questions[digest][key], 0, label, flawed)

    def leave_out(self, digest: str, key: str, vote: int, label: Optional[int], flawed: bool = False) -> None:
        """Keep a labelled row for prediction only (see the class docstring)."""
        _count(self.left_out.setdefault(digest, {}).setdefault(key, [0] * WIDTH), vote, label, flawed)

    def complete(self) -> "EvidenceIndex":
        """Every labelled row known: ``questions`` + ``left_out`` (for test and predict)."""
        if not self.left_out:
            return self
        questions = {d: {k: list(c) for k, c in q.items()} for d, q in self.questions.items()}
        for digest, part in self.left_out.items():
            questions[digest] = merged(questions.get(digest), part)
        return EvidenceIndex(questions, aliases=self.aliases)

    def counts(self, digest: str) -> Counts:
        return self.questions.get(digest, {})

    def __contains__(self, digest: str) -> bool:
        return digest in self.questions

    def size(self) -> dict[str, int]:
        answers = sum(len(c) for c in self.questions.values())
        rows = sum(c[0] for q in self.questions.values() for c in q.values())
        return {"questions": len(self.questions), "answers": answers, "rows": rows}

    # ----- safe persistence: JSON text, in checkpoints (a string) and as a file beside exports ---
    def to_json(self) -> str:
        data = {"format": INDEX_FORMAT, "questions": self.questions}
        if self.left_out:
            data["left_out"] = self.left_out
        if self.aliases:
            data["aliases"] = self.aliases
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "EvidenceIndex":
        data = json.loads(text)
        found = data.get("format") if isinstance(data, dict) else None
        if isinstance(found, str) and found.startswith("mathverify-evidence-") and found != INDEX_FORMAT:
            raise SettingsError(f"evidence index {found!r} was written by an older mathverify; this one reads "
                                f"{INDEX_FORMAT!r} (per-row solution checks): run fit again to build it")
        if found != INDEX_FORMAT:
            raise ValueError(f"not a mathverify evidence index (expected format {INDEX_FORMAT})")
        return cls(data["questions"], data.get("left_out"), data.get("aliases"))

    def save(self, path: Path) -> None:
        save_json(self.to_json(), path)

    @classmethod
    def load(cls, path: Path) -> "EvidenceIndex":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return cls.from_json(handle.read())


def _count(c: list[int], vote: int, label: Optional[int], flawed: bool) -> None:
    for start in (0, FLAWED) if flawed else (0,):
        c[start] += vote
        if label is not None:
            c[start + (1 if label else 2)] += 1


def save_json(text: str, path: Path) -> None:
    """Write an index's JSON text (``EvidenceIndex.to_json``) gzipped, as ``EvidenceIndex.load`` reads it."""
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def pool_of(rows: Iterable[tuple[str, str, bool]]) -> EvidenceIndex:
    """Votes (no labels) of an evaluation file's own rows, given as (digest, answer key, flawed)."""
    pool = EvidenceIndex()
    for digest, key, flawed in rows:
        pool.add(digest, key, None, flawed)
    return pool


def eval_features(index: Optional[EvidenceIndex], pool: Optional[EvidenceIndex], digest: str, key: str,
                  own_in: str, aliases: Optional[dict[str, str]] = None, flawed: bool = False) -> list[float]:
    """Features of an evaluation row: index + pool, minus the row's own vote where it was counted.

    ``own_in`` says where that vote sits: ``"pool"`` (a row of the evaluated file), ``"index"``
    (a training row held out for the seen view: its vote is in the index, its label is not) or
    ``"none"``. ``flawed``: the row's own ``checks.flawed`` bit (counted with its vote).
    """
    counts = merged(index.counts(digest) if index else None, pool.counts(digest) if pool else None)
    if own_in != "none":
        counts = without(counts, key, 1, 0, 0, flawed)
    return features(counts, key, aliases, flawed)


def eval_aliases(index: Optional[EvidenceIndex], pool: EvidenceIndex, workers: Optional[int] = None) -> dict[str, dict[str, str]]:
    """Equal-answer classes for an evaluated file's questions: the index's, recomputed where the
    file brings answers the index has not seen."""
    known = index.aliases if index else {}
    todo = {}
    for digest, part in pool.questions.items():
        old = index.counts(digest) if index else {}
        if any(k not in old for k in part):
            todo[digest] = {k: c[0] for k, c in merged(old, part).items()}
    return {**known, **all_classes(todo, workers)} if todo else known


def attach_evidence(examples: list[dict], index: Optional["EvidenceIndex"]) -> None:
    """Set each example's ``evidence`` (features, leave-one-out): ``index`` plus the votes of the
    examples' own rows (those with ``own_in == "pool"``), equal answers merged per question."""
    pool = pool_of((e["digest"], e["answer_key"], e["flawed"]) for e in examples if e["own_in"] == "pool")
    aliases = eval_aliases(index, pool)
    for e in examples:
        e["evidence"] = eval_features(index, pool, e["digest"], e["answer_key"], e["own_in"], aliases.get(e["digest"]),
                                      e["flawed"])


def row_key(question: str, answer: str, solution: str) -> str:
    """A stable identity of one row's text, for the seen-view hold-out (16 hex digits)."""
    text = "\x00".join((question, answer, solution))
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class TrainingEvidence:
    """Evidence of a training row, leave-one-out, shown as prediction will see it.

    Args:
        index: the training index (every training row's vote and label is in it).
        seed: seeds the per-row draws with the row's position, so a resumed run sees the same.
        hide_labels: share of rows that see no label of their question (as an unseen question);
        partial_labels: share of the other rows that see each sibling's label with a random rate
            (as a test row of a seen question: labelled training rows beside unlabelled test rows).
        thin_siblings: share of rows whose siblings are thinned, each kept with one random rate
            drawn log-uniformly in [1/(S+1), 1] (S: the row's siblings).
    """

    def __init__(self, index: EvidenceIndex, seed: int, hide_labels: float = 0.5,
                 thin_siblings: float = 0.5, partial_labels: float = 0.0) -> None:
        self.index, self.seed = index, seed
        self.hide_labels, self.thin_siblings, self.partial_labels = hide_labels, thin_siblings, partial_labels

    def __call__(self, digest: str, key: str, label: int, passes: int, row_index: int, flawed: bool = False) -> list[float]:
        counts = without(self.index.counts(digest), key, 1, int(label == 1), int(label == 0), flawed)
        rng = random.Random(f"{self.seed}:{passes}:{row_index}")
        if rng.random() < self.hide_labels:
            counts = {k: [c[0], 0, 0, c[3], 0, 0] for k, c in counts.items()}
        elif rng.random() < self.partial_labels:  # some siblings labelled, some not, as a test row sees
            # its question (labelled training rows beside the test file's own unlabelled ones)
            keep = rng.random()
            counts = {k: _joined(*(_labels_kept(h, keep, rng) for h in _halves(c))) for k, c in counts.items()}
        if rng.random() < self.thin_siblings:
            # Log-uniform keep rate in [1/(S+1), 1] for S siblings: kept counts spread evenly over
            # scales (1-3, 3-10, 10-30, ...), so a large training question also teaches the few-sibling
            # situations test questions are often in. A uniform rate gave each count 1/S of the draws,
            # and a head trained on 30 solutions per question missed 4-solution groups by up to 7 points.
            keep = (sum(c[0] for c in counts.values()) + 1) ** -rng.random()
            counts = {k: _joined(*(_thinned(h, keep, rng) for h in _halves(c))) for k, c in counts.items()}
        return features(counts, key, self.index.aliases.get(digest), flawed)


def training_table(shown: "TrainingEvidence", max_rows: int, draws: int, seed: int):
    """Every labelled training row of the index (at most ``max_rows``, a seeded sample), ``draws``
    times each with its own augmentation draw: (features [N, F], labels [N]) as float lists.

    Rows are rebuilt from the counts (a key with c correct rows, f of them flawed, gives c - f
    rows labelled 1 and f labelled 1 and flawed; the same for incorrect ones), so no pass over the
    files is needed.
    """
    rows = []
    for digest, question in shown.index.questions.items():
        for key, c in question.items():
            clean, flawed = _halves(c)
            for label, at in ((1, 1), (0, 2)):
                rows += [(digest, key, label, False)] * clean[at] + [(digest, key, label, True)] * flawed[at]
    rows.sort()
    if len(rows) > max_rows:
        rows = random.Random(seed).sample(rows, max_rows)
    table, labels = [], []
    for draw in range(draws):  # pass numbers below zero: draws the training stream never makes
        for position, (digest, key, label, flawed) in enumerate(rows):
            table.append(shown(digest, key, label, passes=-1 - draw, row_index=position, flawed=flawed))
            labels.append(label)
    return table, labels


def _labels_kept(c: list[int], keep: float, rng: random.Random) -> list[int]:
    """Each labelled row keeps its label with probability ``keep``; its vote stays."""
    return [c[0], sum(rng.random() < keep for _ in range(c[1])), sum(rng.random() < keep for _ in range(c[2]))]


def _thinned(c: list[int], keep: float, rng: random.Random) -> list[int]:
    """Keep each row with probability ``keep``; labelled and unlabelled rows alike."""
    correct = sum(rng.random() < keep for _ in range(c[1]))
    incorrect = sum(rng.random() < keep for _ in range(c[2]))
    unlabelled = sum(rng.random() < keep for _ in range(c[0] - c[1] - c[2]))
    return [correct + incorrect + unlabelled, correct, incorrect]
