"""The one pass over the training files that builds the evidence index (``mathverify.evidence.index``)
and picks the rows held out for the seen validation view."""

from __future__ import annotations

from typing import NamedTuple

from mathverify.data.examples import clean_row
from mathverify.data.sources import iter_rows
from mathverify.data.split import digest_fraction, question_digest
from mathverify.evidence.answers import answer_key
from mathverify.evidence.checks import flawed_in_order
from mathverify.evidence.index import EvidenceIndex, row_key


class HeldOutRow(NamedTuple):
    """A training row held out for the seen validation view (``build_index``)."""

    source: str  # file name, for error messages
    number: int  # row number in that file
    raw: dict  # the row as read
    digest: str  # question digest
    answer_key: str
    row_key: str  # ``row_key`` of its text: what the training stream skips
    label: int
    flawed: bool  # ``checks.flawed`` of its solution


def build_index(parts, is_validation, seen_size: float, seen_max_rows: int) -> tuple[EvidenceIndex, list[HeldOutRow]]:
    """One streaming pass over the training files: the index, and the rows held out for the seen view.

    Rows of validation questions (``is_validation(digest)``) stay out of the fit-time index and go
    to its ``left_out`` part (with their labels), as do the seen view's labels. A row whose text hashes below
    ``seen_size`` (at most ``seen_max_rows`` of them) is held out: its vote counts, its label does
    not, and training skips it; it is kept only if its question has other training rows (else it
    goes back to training). Unreadable rows are left to the training stream to count. Returns
    (index, held-out rows).
    """
    def usable():
        for name, number, raw in iter_rows(parts):
            question = raw.get("question")
            if isinstance(question, str):
                row, _, _ = clean_row(raw, need_label=True)
                if row is not None:
                    yield name, number, raw, question_digest(question), row

    index, held = EvidenceIndex(), []
    # the solution checks (evidence.checks) of a long file run in worker processes, in order
    for (name, number, raw, digest, row), bad in flawed_in_order(usable(), lambda item: (item[4]["solution"],
                                                                                          item[4]["answer"])):
        key = answer_key(row["answer"])
        if is_validation(digest):
            index.leave_out(digest, key, 1, row["label"], bad)
            continue
        rkey = row_key(row["question"], row["answer"], row["solution"])
        if len(held) < seen_max_rows and digest_fraction(rkey) < seen_size:
            index.add(digest, key, None, bad)
            held.append(HeldOutRow(name, number, raw, digest, key, rkey, row["label"], bad))
        else:
            index.add(digest, key, row["label"], bad)
    kept = []
    for item in held:
        if sum(c[0] for c in index.counts(item.digest).values()) > 1:
            kept.append(item)
            index.leave_out(item.digest, item.answer_key, 0, item.label, item.flawed)  # its vote is in the index already
        else:  # alone in its question: nothing "seen" to show, so it trains after all
            index.add_label(item.digest, item.answer_key, item.label, item.flawed)
    index.find_equal_answers()
    return index, kept
