"""The generator targets on constructed metrics: met, not met, and not assessable when the real
reference is 0 or undefined."""

from __future__ import annotations

import math

import pytest

from lusaug.reporting.targets import (
    MET,
    NOT_ASSESSABLE,
    NOT_MET,
    TARGET_NAMES,
    generator_targets,
    kid_target,
    memorisation_target,
    prdc_target,
    recognition_target,
)

MAX_RATE = 0.05


def _prdc(precision: float, coverage: float) -> dict:
    return {
        k: {"value": v, "low": v, "high": v}
        for k, v in (
            ("precision", precision),
            ("recall", 0.5),
            ("density", 1.0),
            ("coverage", coverage),
        )
    }


@pytest.mark.parametrize(
    ("rate", "ref", "status"),
    [
        (0.8, 1.0, MET),  # exactly 0.8 x the reference
        (0.79, 1.0, NOT_MET),
        (0.5, 0.6, MET),
        (0.0, 0.0, NOT_ASSESSABLE),  # 0 >= 0.8 x 0 would be "met": the reference says nothing
        (0.9, None, NOT_ASSESSABLE),  # no real validation frame of the class
        (None, 0.5, NOT_ASSESSABLE),
    ],
)
def test_recognition_target(rate, ref, status):
    m = {"recognition": {"rate": rate}, "recognition_real_val": {"rate": ref}}
    target = recognition_target(m)
    assert target.status == status
    if ref == 0:
        assert "real reference 0" in target.cell()


@pytest.mark.parametrize(
    ("precision", "ref_precision", "coverage", "status"),
    [
        (0.56, 0.7, 0.1, MET),  # 0.56 = 0.8 x 0.7
        (0.55, 0.7, 0.1, NOT_MET),
        (0.9, 0.7, 0.0, NOT_MET),  # coverage must be above 0
        (0.9, 0.0, 0.3, NOT_ASSESSABLE),  # real-vs-real precision 0
        (math.nan, 0.7, 0.3, NOT_ASSESSABLE),
    ],
)
def test_prdc_target(precision, ref_precision, coverage, status):
    m = {"prdc": _prdc(precision, coverage), "prdc_real_reference": _prdc(ref_precision, 0.5)}
    assert prdc_target(m).status == status


def test_prdc_not_computed_is_not_assessable():
    target = prdc_target({"prdc": None, "prdc_real_reference": _prdc(0.7, 0.5)})
    assert target.status == NOT_ASSESSABLE and "filter.prdc_k" in target.detail


@pytest.mark.parametrize(
    ("rate", "status"), [(0.0, MET), (0.05, MET), (0.0501, NOT_MET), (None, NOT_ASSESSABLE)]
)
def test_memorisation_target(rate, status):
    assert memorisation_target({"memorisation": {"rate": rate}}, MAX_RATE).status == status


@pytest.mark.parametrize(
    ("mean", "high", "status"),
    [
        (0.004, 0.005, MET),
        (0.001, 0.005, MET),  # below the real-vs-real interval: closer than real frames are
        (0.005, 0.005, MET),
        (0.0051, 0.005, NOT_MET),
        (None, 0.005, NOT_ASSESSABLE),
        (0.004, None, NOT_ASSESSABLE),
    ],
)
def test_kid_target(mean, high, status):
    kid = None if mean is None else {"mean": mean}
    ref = None if high is None else {"mean": high / 2, "low": high / 4, "high": high}
    assert kid_target({"kid": kid, "kid_real_reference": ref}).status == status


def test_all_four_targets_in_report_order():
    m = {
        "recognition": {"rate": 0.9},
        "recognition_real_val": {"rate": 1.0},
        "prdc": _prdc(0.8, 0.5),
        "prdc_real_reference": _prdc(0.8, 0.6),
        "memorisation": {"rate": 0.0},
        "kid": {"mean": 0.01},
        "kid_real_reference": {"mean": 0.02, "low": 0.01, "high": 0.03},
    }
    targets = generator_targets(m, MAX_RATE)
    assert [t.name for t in targets] == list(TARGET_NAMES)
    assert [t.status for t in targets] == [MET] * 4
    assert targets[0].cell() == "met (90.0% ≥ 0.8 × 100.0%)"
    assert targets[3].cell() == "met (0.0100 ≤ 0.0300)"
