"""EvidenceWarmStart: the evidence head fitted to every labelled row of the index before step 1."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from callbacks.evidence_warm_start import EvidenceWarmStart
from mathverify.evidence.index import LOWERING, N_FEATURES, EvidenceIndex, TrainingEvidence, features
from mathverify.model.heads import EvidenceHead


def _index() -> EvidenceIndex:
    # 40 questions: three rows agree on a right answer, two lone wrong answers each.
    # [votes, correct, incorrect, then the same of flawed rows]: none flawed here
    questions = {f"q{i}": {"7": [3, 3, 0, 0, 0, 0], f"{i + 100}": [1, 0, 1, 0, 0, 0], f"{i + 200}": [1, 0, 1, 0, 0, 0]}
                 for i in range(40)}
    return EvidenceIndex(questions)


def _trainer(index, ckpt_path=None, global_step=0):
    shown = TrainingEvidence(index, seed=0)
    datamodule = SimpleNamespace(_training_evidence=lambda: shown, hparams=SimpleNamespace(seed=0))
    return SimpleNamespace(datamodule=datamodule, ckpt_path=ckpt_path, global_step=global_step,
                           strategy=object(), is_global_zero=True)


def _p_true(head, vector) -> float:
    x = torch.tensor([vector], dtype=torch.float32)
    return float(torch.sigmoid(head(x))[0])


def test_warm_start_teaches_the_head_agreement_before_any_step():
    torch.manual_seed(0)
    module = SimpleNamespace(evidence_head=EvidenceHead(N_FEATURES))
    agreeing = features({"7": [2, 0, 0, 0, 0, 0], "100": [1, 0, 0, 0, 0, 0]}, "7")  # two others agree, no labels
    lone = features({"7": [3, 0, 0, 0, 0, 0], "200": [1, 0, 0, 0, 0, 0]}, "100")  # nobody agrees
    assert _p_true(module.evidence_head, agreeing) == _p_true(module.evidence_head, lone) == 0.5  # zero-init
    EvidenceWarmStart(steps=200).on_fit_start(_trainer(_index()), module)
    assert _p_true(module.evidence_head, agreeing) > 0.8 and _p_true(module.evidence_head, lone) < 0.2


def test_warm_start_leaves_a_resumed_head_alone():
    module = SimpleNamespace(evidence_head=EvidenceHead(N_FEATURES))
    before = [p.clone() for p in module.evidence_head.parameters()]
    EvidenceWarmStart().on_fit_start(_trainer(_index(), ckpt_path="last.ckpt"), module)
    EvidenceWarmStart().on_fit_start(_trainer(_index(), global_step=5), module)
    assert all(torch.equal(a, b) for a, b in zip(before, module.evidence_head.parameters()))


def test_warm_start_learns_that_a_flawed_solution_is_less_often_right():
    """The table rebuilds each labelled row with its own flawed bit (index counts of flawed rows):
    two lone answers per question, the clean one right, the flawed one wrong."""
    torch.manual_seed(0)
    questions = {f"q{i}": {f"{i + 100}": [1, 1, 0, 0, 0, 0], f"{i + 200}": [1, 0, 1, 1, 0, 1]} for i in range(40)}
    module = SimpleNamespace(evidence_head=EvidenceHead(N_FEATURES))
    EvidenceWarmStart(steps=200).on_fit_start(_trainer(EvidenceIndex(questions)), module)
    siblings = {"7": [1, 0, 0, 0, 0, 0]}  # one sibling with another answer, no labels
    clean, bad = features(siblings, "100", flawed=False), features(siblings, "100", flawed=True)
    assert _p_true(module.evidence_head, clean) > 0.7 and _p_true(module.evidence_head, bad) < 0.3


@pytest.mark.parametrize("lowering", [(), LOWERING])
def test_a_defect_seen_only_on_right_rows_cannot_raise_p_true(lowering):
    """A defect feature (here the flawed bit) that the few training rows carrying it happen to pair
    with right answers (as other_form did on math seen): unbounded, the head learns it as a reason to
    say True; with ``lowering`` a defective row never scores above the same row without the defect."""
    torch.manual_seed(0)
    questions = {f"q{i}": {f"{i + 100}": [1, 1, 0, 0, 0, 0], f"{i + 200}": [1, 0, 1, 0, 0, 0],
                           f"{i + 300}": [1, 0, 1, 0, 0, 0]} for i in range(40)}
    questions.update({f"r{i}": {f"{i + 100}": [1, 1, 0, 1, 1, 0], f"{i + 200}": [1, 0, 1, 0, 0, 0]} for i in range(6)})
    module = SimpleNamespace(evidence_head=EvidenceHead(N_FEATURES, lowering=lowering))
    EvidenceWarmStart(steps=200).on_fit_start(_trainer(EvidenceIndex(questions)), module)
    siblings = {"7": [1, 0, 0, 0, 0, 0], "8": [1, 0, 0, 0, 0, 0]}  # two siblings with other answers, no labels
    clean, bad = features(siblings, "100", flawed=False), features(siblings, "100", flawed=True)
    raised = _p_true(module.evidence_head, bad) - _p_true(module.evidence_head, clean)
    if lowering:
        assert raised <= 0
    else:
        assert raised > 0.05  # the situation the bound is for


def test_warm_start_refuses_fsdp_in_one_line_before_any_weight_loads():
    from mathverify.errors import SettingsError

    FSDPStrategy = type("FSDPStrategy", (), {})  # Lightning 2.6 refuses a real one without a GPU
    with pytest.raises(SettingsError, match="EvidenceWarmStart does not run under FSDP"):
        EvidenceWarmStart().setup(SimpleNamespace(strategy=FSDPStrategy()), None, "fit")
    EvidenceWarmStart().setup(SimpleNamespace(strategy=SimpleNamespace()), None, "fit")  # any other strategy: fine
