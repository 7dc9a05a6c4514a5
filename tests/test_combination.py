"""The per-case combination of text margin and evidence shift: fitted on validation rows, kept in
checkpoints, used by test/predict, identity where the rows give no reason to move."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from callbacks.combination import FitCombination
from mathverify.errors import SettingsError
from mathverify.model.combination import CHI2_1PCT, IDENTITY, Combination, fit_cases
from mathverify.model.module import VerifierModule

IN_FIT = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"))  # a validation inside fit


def _rows(n: int, seed: int, text_noise: bool):
    """Evidence d carries the signal; the text margin m is either noise (std 2) or calibrated extra signal."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, generator=g, dtype=torch.float64) * 2
    if text_noise:
        m = torch.randn(n, generator=g, dtype=torch.float64) * 2
        truth = d
    else:
        m = torch.randn(n, generator=g, dtype=torch.float64)
        truth = m + d
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(truth)).double()
    return m, d, y



def fit_case(margin, shift, labels, prior: float = 1.0, min_gain: float = CHI2_1PCT[3]) -> dict:
    """(a, b, c) fitted on rows of one case: ``fit_cases`` with every row unseen and that case free."""
    fitted = fit_cases(margin, shift, labels, torch.zeros(len(labels), dtype=torch.bool), (0,), prior, min_gain)
    return {"weights": fitted["rows"][0], **{k: v for k, v in fitted.items() if k != "rows"}}

def test_noise_text_gets_a_weight_near_zero():
    m, d, y = _rows(2000, 0, text_noise=True)
    fitted = fit_case(m, d, y)
    a, b, c = fitted["weights"]
    assert fitted["adopted"] and abs(a) < 0.15 and b == pytest.approx(1.0, abs=0.15) and abs(c) < 0.2
    assert fitted["nll_fit"] < fitted["nll_identity"]


def test_a_model_already_right_keeps_the_identity():
    for seed in range(5):  # rows drawn from sigmoid(m + d) itself: nothing to gain
        fitted = fit_case(*_rows(500, seed, text_noise=False))
        assert not fitted["adopted"] and fitted["weights"] == list(IDENTITY), seed


def test_an_all_zero_column_keeps_its_weight():
    m, d, y = _rows(1000, 1, text_noise=True)
    fitted = fit_case(torch.zeros_like(m), d * 3, y)  # evidence only, over-confident by 3x
    a, b, _ = fitted["weights"]
    assert fitted["adopted"] and a == 1.0 and b == pytest.approx(1 / 3, abs=0.05)


def test_each_case_uses_its_own_row_and_identity_is_the_sum():
    combination = Combination()
    m, d = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, -1.0])
    labelled = torch.tensor([False, True, True])
    assert torch.allclose(combination(m, d, labelled), m + d)
    combination.set_case(1, (0.0, 2.0, 1.0))
    assert torch.allclose(combination(m, d, labelled), torch.tensor([4.0, 3.0, -1.0]))
    with pytest.raises(ValueError, match="2 x 3"):
        combination.load_list([[1, 1, 0]])
    with pytest.raises(ValueError, match="finite"):
        combination.load_list([[1, 1, 0], [float("nan"), 1, 0]])


def test_checkpoint_round_trip_and_old_checkpoints_read_as_identity():
    module = VerifierModule()
    module.combination.set_case(0, (0.25, 1.5, -0.5))
    checkpoint = {"state_dict": {}}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["combination"] == [[0.25, 1.5, -0.5], list(IDENTITY)]
    again = VerifierModule()
    again.on_load_checkpoint(checkpoint)
    assert again.combination.as_list() == checkpoint["combination"]
    old = {k: v for k, v in checkpoint.items() if k != "combination"}
    fresh = VerifierModule()
    fresh.on_load_checkpoint(old)
    assert fresh.combination.as_list() == [list(IDENTITY), list(IDENTITY)]


class _Module:
    """What FitCombination reads: a real ``Combination``, epoch rows, ``log``."""

    def __init__(self, rows):
        self.combination, self.rows, self.logged = Combination(), rows, {}

    def epoch_outputs(self):
        return self.rows

    def log(self, name, value, **_):
        self.logged[name] = value


def test_callback_gives_a_small_case_the_text_weight_of_all_rows_and_leaves_its_evidence_alone():
    m0, d0, y0 = _rows(1500, 2, text_noise=True)  # unseen rows: text is noise
    m1, d1, y1 = _rows(30, 3, text_noise=True)  # seen rows: too few for their own b and c
    rows = {"margin": torch.cat([m0, m1]).float(), "shift": torch.cat([d0, d1]).float(),
            "labels": torch.cat([y0, y1]).long(), "labelled": torch.cat([torch.zeros(1500), torch.ones(30)]).long()}
    module = _Module(rows)
    FitCombination(min_rows=50, case_rows=50).on_validation_epoch_end(IN_FIT, module)
    unseen, seen = module.combination.as_list()
    assert abs(unseen[0]) < 0.15 and abs(seen[0]) < 0.15 and seen[1:] == [1.0, 0.0]  # noise text dropped for seen rows too
    assert module.logged["val/combination_adopted"] == 1.0 and module.logged["val_seen/combination_text"] == seen[0]
    assert module.logged["val/loss_combined"] < 0.6 and module.logged["val_seen/loss_combined"] < 0.7


def test_a_large_seen_case_keeps_its_own_text_weight():
    m0, d0, y0 = _rows(1500, 7, text_noise=True)  # unseen: text is noise
    m1, d1, y1 = _rows(1500, 8, text_noise=False)  # seen: the text is right
    rows = {"margin": torch.cat([m0, m1]).float(), "shift": torch.cat([d0, d1]).float(),
            "labels": torch.cat([y0, y1]).long(), "labelled": torch.cat([torch.zeros(1500), torch.ones(1500)]).long()}
    module = _Module(rows)
    FitCombination(min_rows=50, case_rows=50).on_validation_epoch_end(IN_FIT, module)
    unseen, seen = module.combination.as_list()
    assert abs(unseen[0]) < 0.15 and seen[0] > 0.8


def test_joint_fit_keeps_one_text_weight_and_each_case_its_evidence_weights():
    m0, d0, y0 = _rows(1500, 4, text_noise=True)
    m1, d1, y1 = _rows(1500, 5, text_noise=True)
    labelled = torch.cat([torch.zeros(1500), torch.ones(1500)]).bool()
    # seen rows' evidence over-confident by 2x: only their b should move
    fitted = fit_cases(torch.cat([m0, m1]), torch.cat([d0, d1 * 2]), torch.cat([y0, y1]), labelled)
    unseen, seen = fitted["rows"]
    assert fitted["adopted"] and unseen[0] == seen[0] and abs(seen[0]) < 0.1
    assert unseen[1] == pytest.approx(1.0, abs=0.15) and seen[1] == pytest.approx(0.5, abs=0.08)


def test_too_few_rows_in_all_keeps_the_identity():
    m, d, y = _rows(20, 6, text_noise=True)
    module = _Module({"margin": m.float(), "shift": d.float(), "labels": y.long(), "labelled": torch.zeros(20).long()})
    module.combination.set_case(0, (0.5, 0.5, 0.5))  # left over from an earlier validation
    FitCombination(min_rows=50, case_rows=50).on_validation_epoch_end(IN_FIT, module)
    assert module.combination.as_list() == [list(IDENTITY), list(IDENTITY)] and not module.logged


def test_callback_must_come_before_the_threshold():
    from callbacks.threshold import DecisionThreshold

    fit = FitCombination()
    trainer = SimpleNamespace(callbacks=[DecisionThreshold(), fit])
    with pytest.raises(SettingsError, match="before callbacks.threshold.DecisionThreshold"):
        fit.setup(trainer, _Module({}), "fit")
    first = FitCombination()
    first.setup(SimpleNamespace(callbacks=[first, DecisionThreshold()]), _Module({}), "fit")  # the right order passes
    with pytest.raises(TypeError, match="VerifierModule"):
        first.setup(SimpleNamespace(callbacks=[first]), SimpleNamespace(), "fit")


def test_bad_settings_fail_in_one_line():
    with pytest.raises(ValueError, match="min_rows"):
        FitCombination(min_rows=0)
    with pytest.raises(ValueError, match="min_gain"):
        FitCombination(min_gain=-1.0)


def test_slightly_noisy_text_loses_its_weight_though_no_test_would_call_the_fit_significant():
    """Text noise of std 0.3 on 600 rows: too small for the chi-square gate (identity kept in 5 of 8
    draws), yet enough to flip the rows the evidence leaves near P = 0.5. The callback's default
    adopts the fit, so the text's weight follows what the held-out rows support (mean |a| ~ 0.3)."""
    gated_kept, weights = 0, []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        d = torch.randn(600, generator=g, dtype=torch.float64) * 2
        m = torch.randn(600, generator=g, dtype=torch.float64) * 0.3
        y = (torch.rand(600, generator=g, dtype=torch.float64) < torch.sigmoid(d)).long()
        rows = {"margin": m.float(), "shift": d.float(), "labels": y, "labelled": torch.zeros(600).long()}
        gated, default = _Module(rows), _Module(rows)
        FitCombination(min_gain=None).on_validation_epoch_end(IN_FIT, gated)
        FitCombination().on_validation_epoch_end(IN_FIT, default)
        gated_kept += gated.combination.as_list()[0] == list(IDENTITY)
        weights.append(default.combination.as_list()[0][0])
    assert gated_kept >= 4
    assert max(abs(a) for a in weights) < 0.7 and sum(abs(a) for a in weights) / len(weights) < 0.4


def test_by_default_a_seen_view_of_a_hundred_rows_does_not_fit_its_own_evidence_weights():
    """120 seen rows with over-confident evidence: fewer than case_rows (200), so b and c stay (1, 0)
    and only the text weight, fitted on all rows, applies (a few informative rows cannot carry three numbers)."""
    m0, d0, y0 = _rows(1500, 9, text_noise=True)
    m1, d1, y1 = _rows(120, 10, text_noise=True)
    rows = {"margin": torch.cat([m0, m1]).float(), "shift": torch.cat([d0, d1 * 2]).float(),
            "labels": torch.cat([y0, y1]).long(), "labelled": torch.cat([torch.zeros(1500), torch.ones(120)]).long()}
    module = _Module(rows)
    FitCombination().on_validation_epoch_end(IN_FIT, module)
    unseen, seen = module.combination.as_list()
    assert seen[1:] == [1.0, 0.0] and abs(seen[0]) < 0.15
    fitted_alone = _Module(rows)
    FitCombination(case_rows=100, fit_evidence=True).on_validation_epoch_end(IN_FIT, fitted_alone)
    assert fitted_alone.combination.as_list()[1][1] < 0.8  # with a lower bar it would fit b itself


def test_by_default_the_evidence_keeps_its_scale_and_the_intercept_follows_the_text_weight():
    """1,500 unseen rows whose evidence is over-confident by 2x, and a text margin that carries signal
    around an offset of 1.5 which the training sum m + d already takes back (the head learnt beside
    the text): by default b stays 1 (the warm-started head is calibrated on every labelled training
    row; on real unseen cases the validation refit of b and c left the test ECE higher in 10 of 10
    runs), the text gets its weight a, and the intercept is (1 - a) * mean(m), so re-weighting the
    text around its mean leaves the base rate where m + d put it; with no text (an evidence-only
    model) nothing moves; ``fit_evidence`` refits b and c too."""
    m, d, y = _rows(1500, 11, text_noise=False)
    rows = {"margin": (m + 1.5).float(), "shift": (d * 2 - 1.5).float(), "labels": y.long(),
            "labelled": torch.zeros(1500).long()}
    default, refit = _Module(rows), _Module(rows)
    FitCombination().on_validation_epoch_end(IN_FIT, default)
    FitCombination(fit_evidence=True).on_validation_epoch_end(IN_FIT, refit)
    a, b, c = default.combination.as_list()[0]
    assert b == 1.0 and a > 0.5 and c == pytest.approx((1 - a) * float(rows["margin"].double().mean()), abs=1e-6)
    assert refit.combination.as_list()[0][1] == pytest.approx(0.5, abs=0.1)
    evidence_only = _Module({**rows, "margin": torch.zeros(1500)})
    FitCombination().on_validation_epoch_end(IN_FIT, evidence_only)
    assert evidence_only.combination.as_list()[0] == list(IDENTITY)


def test_validation_questions_righter_than_the_training_sum_do_not_move_the_base_rate():
    """Noise text (mean 0.5, as the training sum m + d holds it) and validation rows right more often
    than m + d says (+0.5 log-odds: a few dozen validation questions have their own rate of right
    rows). A free intercept takes that +0.5 and carries it to every test question; the default's
    intercept reads no label, so the base rate stays the training sum's while the noise text loses
    its weight."""
    g = torch.Generator().manual_seed(12)
    d = torch.randn(600, generator=g, dtype=torch.float64) * 2
    m = torch.randn(600, generator=g, dtype=torch.float64) + 0.5
    y = (torch.rand(600, generator=g, dtype=torch.float64) < torch.sigmoid(d + 0.5 + 0.5)).long()
    rows = {"margin": m.float(), "shift": (d + 0.5 - m.mean()).float(), "labels": y, "labelled": torch.zeros(600).long()}
    default, free = _Module(rows), _Module(rows)
    FitCombination().on_validation_epoch_end(IN_FIT, default)
    FitCombination(fit_evidence=True).on_validation_epoch_end(IN_FIT, free)  # b and c free: c takes the shift
    a, _, c = default.combination.as_list()[0]
    base = float(rows["margin"].double().mean())  # m's mean: where the training sum has it
    assert abs(a) < 0.3 and c == pytest.approx((1 - a) * base, abs=1e-6)
    mean_z = lambda module: float(module.combination(rows["margin"], rows["shift"], rows["labelled"].bool()).mean())
    training_sum = float((rows["margin"] + rows["shift"]).double().mean())
    assert abs(mean_z(default) - training_sum) < 0.1 and mean_z(free) - training_sum > 0.3
