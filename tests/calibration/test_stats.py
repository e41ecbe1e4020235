"""Calibration statistics on constructed replicate records give the known answers."""

from __future__ import annotations

import math

import pytest

from lusaug.calibration.plots import POWER_CURVE_PNG, TYPE_ONE_PNG, write_plots
from lusaug.calibration.records import replicate_key
from lusaug.calibration.stats import (
    binomial_rate,
    coverage,
    exact_min_p,
    model_mdd,
    power,
    power_curve,
    summary,
    type_one_rates,
)


def _comp(name, role, decision, lo=None, hi=None, truth=None, mdd=None):
    return {
        "name": name,
        "role": role,
        "decision": decision,
        "lo": lo,
        "hi": hi,
        "true_effect": truth,
        "mdd": mdd,
    }


def _record(r, n_rare, comps, status="ok"):
    return {
        "key": replicate_key(n_rare, r),
        "replicate": r,
        "n_rare_patients": n_rare,
        "status": status,
        "comparisons": comps,
    }


def _flags(k, n):
    return [i < k for i in range(n)]


def test_clopper_pearson_and_wilson_of_3_of_20():
    cp = binomial_rate(3, 20)
    assert cp.rate == 0.15 and (cp.k, cp.n) == (3, 20)
    assert cp.lo == pytest.approx(0.03207, abs=1e-5) and cp.hi == pytest.approx(0.37893, abs=1e-5)
    wilson = binomial_rate(3, 20, method="wilson")
    assert wilson.lo == pytest.approx(0.05237, abs=1e-5)
    assert wilson.hi == pytest.approx(0.36042, abs=1e-5)
    none = binomial_rate(0, 20)  # 0 of n: upper bound 1 - (alpha/2)^(1/n)
    assert none.lo == 0.0 and none.hi == pytest.approx(1 - 0.025 ** (1 / 20))
    assert cp.mc_se == pytest.approx(math.sqrt(0.15 * 0.85 / 20))
    assert math.isnan(binomial_rate(0, 0).rate)
    with pytest.raises(ValueError, match="k <= n"):
        binomial_rate(3, 2)


def test_type_one_power_and_coverage_count_only_finished_replicates():
    null_helps, placebo_helps, oracle_helps = _flags(3, 20), _flags(1, 20), _flags(16, 20)
    covers = _flags(18, 20)
    records = [
        _record(
            r,
            4,
            [
                _comp(
                    "synthetic-null_other-resnet",
                    "null",
                    "helps" if null_helps[r] else "cannot be shown with 4 patients",
                ),
                _comp("placebo", "placebo", "helps" if placebo_helps[r] else "no difference"),
                _comp(
                    "synthetic-oracle-resnet",
                    "oracle",
                    "helps" if oracle_helps[r] else "does not help",
                    lo=0.05 if covers[r] else 0.2,
                    hi=0.3,
                    truth=0.1,
                ),
                _comp("class_weights-resnet", "other", "helps"),
            ],
        )
        for r in range(20)
    ]
    # a failed replicate and one whose every comparison says helps: the failure is not counted
    records.append(_record(20, 4, [_comp("placebo", "placebo", "helps")], status="failed"))
    t1 = type_one_rates(records)
    assert set(t1) == {"synthetic-null_other-resnet", "placebo"}  # 'other' is not a null
    assert (t1["synthetic-null_other-resnet"].k, t1["synthetic-null_other-resnet"].n) == (3, 20)
    assert t1["synthetic-null_other-resnet"].rate == 0.15
    assert t1["placebo"].rate == 0.05
    pw = power(records)["synthetic-oracle-resnet"]
    assert (pw.k, pw.n, pw.rate) == (16, 20, 0.8)
    assert pw.lo == pytest.approx(0.56339, abs=1e-5) and pw.hi == pytest.approx(0.94267, abs=1e-5)
    cov = coverage(records)["synthetic-oracle-resnet"]
    assert (cov.k, cov.n, cov.rate) == (18, 20, 0.9)
    out = summary(records)
    assert out["finished"] == 20 and out["failed"] == [replicate_key(4, 20)]
    # re-run with --retry-failed: its new line supersedes the failed one
    records.append(_record(20, 4, [_comp("placebo", "placebo", "no difference")]))
    out = summary(records)
    assert out["replicates"] == out["finished"] == 21 and out["failed"] == []
    assert out["type_one"]["placebo"]["k"] == 1 and out["type_one"]["placebo"]["n"] == 21


def test_coverage_leaves_out_comparisons_without_a_true_effect():
    records = [
        _record(r, 4, [_comp("o", "oracle", "helps", lo=0.0, hi=1.0, truth=None)])
        for r in range(5)
    ]
    assert coverage(records) == {}


def test_power_curve_by_rare_patients_with_mdd_quartiles():
    records = []
    helps = {4: 0, 8: 5, 16: 9}
    for n_rare, k in helps.items():
        for r in range(10):
            mdd = (r + 1) / n_rare  # 1/n .. 10/n: median 5.5/n
            decision = "helps" if r < k else "does not help"
            records.append(
                _record(r, n_rare, [_comp("oracle-resnet", "oracle", decision, mdd=mdd)])
            )
    curve = power_curve(records).set_index("n_rare_patients")
    assert list(curve.index) == [4, 8, 16]
    assert list(curve["power"]) == [0.0, 0.5, 0.9]
    assert list(curve["k"]) == [0, 5, 9] and set(curve["n"]) == {10}
    assert curve.loc[8, "lo"] == pytest.approx(0.18709, abs=1e-5)
    assert curve.loc[8, "hi"] == pytest.approx(0.81291, abs=1e-5)
    assert curve.loc[4, "mdd_median"] == pytest.approx(5.5 / 4)
    assert curve.loc[16, "mdd_q1"] == pytest.approx(3.25 / 16)
    assert curve.loc[4, "exact_min_p"] == 0.125


def test_model_mdd_t_formula_and_the_exact_tests_floor():
    # (t_.975,9 + t_.8,9) / sqrt(10) = (2.262157 + 0.883404) / 3.162278 (t tables)
    assert model_mdd(1.0, 10) == pytest.approx(0.994714, abs=1e-5)
    assert model_mdd(2.0, 10) == pytest.approx(2 * 0.994714, abs=1e-5)
    assert exact_min_p(4) == 0.125 and exact_min_p(6) == 0.03125
    assert math.isinf(model_mdd(1.0, 4))  # 2/2^4 = 0.125 > 0.05: no test can say helps
    assert math.isfinite(model_mdd(1.0, 6))


def test_plots_are_written(tmp_path):
    records = [
        _record(
            r,
            n,
            [
                _comp("oracle-resnet", "oracle", "helps" if r % 2 else "no", mdd=0.2),
                _comp("placebo", "placebo", "no"),
            ],
        )
        for n in (4, 8)
        for r in range(4)
    ]
    paths = write_plots(records, tmp_path / "img", alpha=0.05, target_power=0.8)
    assert paths["power_curve"].name == POWER_CURVE_PNG and paths["type_one"].name == TYPE_ONE_PNG
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
