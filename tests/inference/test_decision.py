"""The verdicts: each category on a comparison built to land in it, the family with Holm."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lusaug.inference import (
    CANNOT,
    HELPS,
    HURTS,
    NO_EVIDENCE,
    Comparison,
    InferenceError,
    PrimarySpec,
    compare,
    decide,
    decide_family,
)
from lusaug.inference.simulate import CONTROL, STRATEGY, SimDesign, simulate
from tests.inference.builders import collapsed, endpoints, one_run_counts

ALPHA, MARGIN = 0.05, 0.02
RISING = np.array([0.10, 0.20, 0.15, 0.30, 0.25, 0.10, 0.20, 0.15])  # 8 patients, all up


def comparison(strategy_values, control_values, counts=None, strategy_counts=None, name="s"):
    counts = one_run_counts() if counts is None else counts
    return compare(
        (endpoints(strategy_values), strategy_counts or counts),
        (endpoints(control_values), counts),
        (name, "baseline", "vit"),
    )


def test_the_pocus_helps_cannot_be_shown_with_four_patients():
    c = comparison([28.9, 68.4, 19.4, 0.0], np.zeros(4))
    d = decide(c, "recall", alpha=ALPHA, margin=MARGIN)
    assert d.verdict == CANNOT
    assert d.p_value == pytest.approx(0.25) and d.min_p == pytest.approx(0.25)
    assert d.patients_needed == 6
    assert "cannot be shown with 4 patients (1 with no difference)" in d.reason
    assert "6 patients all moving the same way" in d.reason
    # even four non-zero differences all moving the same way cannot reach 0.05
    d4 = decide(comparison([0.1, 0.2, 0.3, 0.4], np.zeros(4)), "recall", alpha=ALPHA, margin=0)
    assert (d4.verdict, d4.min_p) == (CANNOT, 0.125)


def test_helps_when_every_condition_holds():
    c = comparison(np.vstack([RISING + 0.01, RISING - 0.01]), np.zeros((2, 8)))
    d = decide(c, "recall", alpha=ALPHA, margin=MARGIN)
    assert d.verdict == HELPS, d.reason
    assert d.p_value == pytest.approx(2 / 256)
    assert d.lo > 0 and d.non_inferiority.non_inferior
    assert d.role == "primary" and d.p_adjusted == d.p_value


def test_hurts_when_the_rare_class_is_significantly_worse():
    c = comparison(np.vstack([-RISING, -RISING]), np.zeros((2, 8)))
    d = decide(c, "recall", alpha=ALPHA, margin=MARGIN)
    assert d.verdict == HURTS and "recall worse" in d.reason


def test_hurts_when_macro_f1_is_worse_than_the_margin_whatever_the_rare_class_does():
    counts = one_run_counts()
    c = comparison(np.vstack([RISING, RISING]), np.zeros((2, 8)), counts, collapsed(counts))
    d = decide(c, "recall", alpha=ALPHA, margin=MARGIN)
    assert d.non_inferiority.inferior and d.non_inferiority.hi < -MARGIN
    assert d.verdict == HURTS and "worse than the margin" in d.reason


def test_no_evidence_when_the_exact_test_does_not_reject():
    mixed = RISING * np.array([1, -1, 1, -1, 1, -1, 1, 1])
    d = decide(comparison(mixed, np.zeros(8)), "recall", alpha=ALPHA, margin=MARGIN)
    assert d.verdict == NO_EVIDENCE and d.p_value > ALPHA and "> alpha" in d.reason


def test_no_evidence_when_the_models_differ_by_no_more_than_seed_noise():
    # every patient up by the same small amount on average, but the two runs of the strategy
    # are 0.8 apart for every patient: the sign-flip test rejects (these trained models differ),
    # the interval with the seed term does not exclude 0
    small = RISING / 5
    c = comparison(np.vstack([small + 0.4, small - 0.4]), np.zeros((2, 8)))
    d = decide(c, "recall", alpha=ALPHA, margin=MARGIN)
    assert d.p_value <= ALPHA and d.lo < 0 < d.hi
    assert d.verdict == NO_EVIDENCE and "seed noise" in d.reason


def test_no_evidence_when_macro_f1_is_not_shown_non_inferior():
    study = simulate(SimDesign(patients_per_class=(10, 8, 8, 8), seeds=2), 4)
    counts_s, counts_c = study.setting(STRATEGY)[1], study.setting(CONTROL)[1]
    c = comparison(np.vstack([RISING, RISING]), np.zeros((2, 8)), counts_c, counts_s)
    f1 = c.population["f1_macro"].interval
    margin = -f1.lo / 2  # between the bounds: neither non-inferior nor inferior
    assert f1.lo < -margin < f1.hi
    d = decide(c, "recall", alpha=ALPHA, margin=margin)
    assert d.verdict == NO_EVIDENCE and "not non-inferior" in d.reason


def test_the_family_primary_at_alpha_secondaries_with_holm():
    helps = comparison(np.vstack([RISING, RISING]), np.zeros((2, 8)), name="primary")
    six_up = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.25])  # p = 2/64 = 0.031 unadjusted
    others = {
        f"other{i}": comparison([0.1, -0.2, 0.3, -0.1, 0.2, -0.3], np.zeros(6), name=f"other{i}")
        for i in range(3)
    }
    second = comparison(six_up, np.zeros(6), name="six")
    comps: dict[str, Comparison] = {c.name: c for c in [helps, second, *others.values()]}
    spec = PrimarySpec("primary", "baseline", "vit", "recall")
    fam = decide_family(comps, spec, alpha=ALPHA, margin=MARGIN)
    assert fam.primary.verdict == HELPS and fam.primary.role == "primary"
    assert fam.primary.p_adjusted == fam.primary.p_value  # the primary is not adjusted
    six = fam.secondaries[second.name]
    assert six.p_value == pytest.approx(2 / 64)
    # Holm over 4 secondaries: the best p 6 patients can give, 2/64, becomes 4 x 2/64 = 0.125
    assert six.best_p_adjusted == pytest.approx(0.125) and six.verdict == CANNOT
    assert six.patients_needed == 8  # 4 x 2/2^8 = 0.031 <= 0.05
    assert fam.holm["recall"][second.name] == pytest.approx(six.p_adjusted)
    assert fam.chance.m == 4 and fam.helps_among_secondaries == 0
    json.dumps(fam.to_dict(), allow_nan=False)
    with pytest.raises(InferenceError, match="not among the comparisons"):
        decide_family(
            comps, PrimarySpec("nope", "baseline", "vit", "recall"), alpha=0.05, margin=0
        )
    with pytest.raises(InferenceError, match="evaluate.primary.endpoint"):
        PrimarySpec("primary", "baseline", "vit", "accuracy")


def test_no_verdict_contradicts_the_exact_test():
    rng = np.random.default_rng(9)
    seen = set()
    for r in range(40):
        design = SimDesign(
            patients_per_class=(10, 8, 8, int(rng.integers(3, 11))),
            seeds=int(rng.integers(1, 4)),
            effect=float(rng.choice([-2.0, 0.0, 2.0])),
            seed_run_sd=float(rng.choice([0.0, 0.4])),
        )
        study = simulate(design, rng)
        c = compare(study.setting(STRATEGY), study.setting(CONTROL), ("s", "c", "a"))
        for endpoint in ("recall", "auroc", "ap"):
            d = decide(c, endpoint, alpha=ALPHA, margin=MARGIN)
            seen.add(d.verdict)
            if d.verdict == HELPS:
                assert d.p_value <= ALPHA and d.estimate > 0 and d.lo > 0
            if d.p_value > ALPHA:
                assert d.verdict != HELPS
                assert d.verdict != HURTS or d.non_inferiority.inferior
            if d.min_p > ALPHA:
                assert d.verdict in (CANNOT, HURTS)
    assert {HELPS, HURTS, CANNOT} <= seen  # the loop exercised the categories
