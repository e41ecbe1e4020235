"""The verdict interval: the t interval on per-patient differences plus the between-run term."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lusaug.inference import (
    compare_patients,
    compare_population,
    descriptive_mean_bootstrap,
    setting_value,
)
from lusaug.inference.simulate import CONTROL, STRATEGY, SimDesign, simulate
from tests.inference.builders import endpoints


def test_one_run_per_arm_gives_the_t_interval_on_n_minus_1_df_and_says_it_lacks_seeds():
    d = np.array([0.289, 0.684, 0.194, 0.0])
    r = compare_patients(endpoints(d), endpoints(np.zeros(4)), "recall")
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert (r.interval.lo, r.interval.hi) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.interval.df == pytest.approx(3)
    assert r.interval.basis == "verdict"
    assert "NOT estimable" in r.interval.method
    assert r.variance.run_df == 0 and r.variance.seed_term == 0


def test_runs_that_agree_add_nothing_and_runs_that_move_together_widen_the_interval():
    d = np.array([0.10, 0.25, 0.05, 0.20, 0.15])
    control = endpoints(np.zeros((2, 5)))
    agreeing = compare_patients(endpoints(np.vstack([d, d])), control, "recall")
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert agreeing.interval.hi - agreeing.interval.lo == pytest.approx(2 * half)
    assert agreeing.variance.seed_term == pytest.approx(0)
    # same seed-averaged differences, but one run is 0.3 above the other for every patient: the
    # spread across patients is unchanged, the between-run spread is not
    shifted = compare_patients(endpoints(np.vstack([d + 0.15, d - 0.15])), control, "recall")
    assert shifted.per_patient == pytest.approx(agreeing.per_patient)
    assert shifted.test.p_value == agreeing.test.p_value  # the sign-flip test cannot see it
    # between-run variance of the run means: var([m + .15, m - .15]) = 0.045, pooled with the
    # control's 0 over 2 df -> 0.0225, times (1/2 + 1/2)
    assert shifted.variance.run == pytest.approx(0.0225)
    assert shifted.variance.seed_term == pytest.approx(0.0225)
    assert shifted.interval.lo < 0 < agreeing.interval.lo
    assert shifted.interval.df < agreeing.interval.df  # Satterthwaite: the 2 run df weigh in


def test_interaction_and_seed_noise_are_separated():
    rng = np.random.default_rng(0)
    p, s = 2000, 3
    patient = rng.normal(0, 1, p)
    interaction = rng.normal(0, 0.3, p)  # var 0.09: patients respond differently
    a = patient + interaction + rng.normal(0, 0.5, (s, p))  # seed noise var 0.25
    b = patient + rng.normal(0, 0.5, (s, p))
    r = compare_patients(endpoints(a), endpoints(b), "recall", mc_draws=100)  # test not at issue
    # residual mean square on (3 - 1) (2000 - 1) df per arm: SE about 3 %
    assert r.patient_seed_var == pytest.approx(0.25, rel=0.1)
    # var(d_i) = 2 sigma_int^2 + sigma_seed^2 (1/3 + 1/3): the interaction is counted per arm, so
    # an interaction of variance 0.09 in one arm is sigma_int^2 = 0.045 (SE about 10 %)
    assert r.interaction_var == pytest.approx(0.045, rel=0.3)


def test_population_interval_is_stratified_and_the_bootstrap_is_labelled_descriptive():
    study = simulate(SimDesign(patients_per_class=(12, 8, 8, 4), seeds=2), 3)
    s_counts, c_counts = study.setting(STRATEGY)[1], study.setting(CONTROL)[1]
    r = compare_population(s_counts, c_counts, "f1_macro", bootstrap_draws=300)
    assert r.interval.basis == "verdict" and "class-stratified" in r.interval.method
    # 4 strata with 11 + 7 + 7 + 3 df; Satterthwaite can only lose df
    assert 3 <= r.variance.patients_df <= 28
    assert r.interval.lo < r.estimate < r.interval.hi
    assert r.estimate == pytest.approx(
        np.mean(r.per_seed["strategy"]) - np.mean(r.per_seed["control"])
    )
    assert r.descriptive.basis == "descriptive"
    assert "never a verdict basis" in r.descriptive.note and "class 3: 4" in r.descriptive.note


def test_descriptive_bootstrap_of_four_patients_has_few_distinct_draws():
    d = np.array([0.289, 0.684, 0.194, 0.0])
    iv = descriptive_mean_bootstrap(d, 0.95, 2000, 0, 10)
    # 35 distinct resamples; a draw of one patient only has probability 4/256 < 2.5 %, so with no
    # negative difference the lower bound is above 0 (issue 21)
    assert iv.lo >= 0.0 and iv.basis == "descriptive"
    assert "fewer than 10 patients" in iv.note


def test_a_run_reference_supplies_the_seed_term_when_the_arms_hold_one_run_each():
    d = np.array([0.10, 0.25, 0.05, 0.20, 0.15])
    whole = endpoints(np.vstack([d + 0.15, d - 0.15]))  # e.g. the whole baseline of a placebo
    halves = whole.select([0]), whole.select([1])
    alone = compare_patients(*halves, "recall")
    borrowed = compare_patients(*halves, "recall", run_reference=[whole])
    assert alone.variance.run_df == 0 and "NOT estimable" in alone.interval.method
    # between-run variance of the whole baseline's two run means: var([m + .15, m - .15])
    assert borrowed.variance.run == pytest.approx(0.045) and borrowed.variance.run_df == 1
    assert borrowed.variance.seed_term == pytest.approx(0.045 * (1 + 1))
    assert "1 reference setting" in borrowed.interval.method
    assert borrowed.interval.hi - borrowed.interval.lo > alone.interval.hi - alone.interval.lo


def test_a_settings_own_value_has_the_t_interval_plus_the_seed_term_over_its_runs():
    d = np.array([0.6, 0.8, 0.5, 0.7, 0.4])
    agreeing = setting_value(endpoints(np.vstack([d, d])), "recall")
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert agreeing.estimate == pytest.approx(d.mean())
    assert (agreeing.interval.lo, agreeing.interval.hi) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    shifted = setting_value(endpoints(np.vstack([d + 0.1, d - 0.1])), "recall")
    assert shifted.variance.seeds == [2]
    assert shifted.variance.seed_term == pytest.approx(0.02 / 2)  # var([m+.1, m-.1]) / S
    assert shifted.per_seed == pytest.approx([d.mean() + 0.1, d.mean() - 0.1])
    counts = simulate(SimDesign(seeds=2), 8).setting(CONTROL)[1]
    f1 = setting_value(counts, "f1_macro")
    assert f1.interval.lo < f1.estimate < f1.interval.hi and f1.pooled is None
    assert f1.estimate == pytest.approx(np.mean(f1.per_seed))
