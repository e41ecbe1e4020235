"""The fold protocol on a constructed fold: each control is caught by the measures meant to
catch it, the held-out real patient is not, and the usable-target rule follows from both."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lusaug.core.config.features_sections import default_features
from lusaug.features.controls import MEANT_TO_CATCH, NEGATIVE, POSITIVE, blurred
from lusaug.features.fold import FoldInputs, fold_protocol, judge_synthetic
from lusaug.features.plots import controls_figure
from tests.features.helpers import RARE, block_features, toy_fold

pytestmark = pytest.mark.slow  # the whole protocol: ~45 s on a loaded 2-core machine

CFG = default_features(
    probe={"resamples": 100},
    fidelity={"resamples": 100, "reference_draws": 1, "c2st_folds": 2},
    controls={"size": 16},
)


@pytest.fixture(scope="module")
def fold():
    train, val = toy_fold()
    return fold_protocol(FoldInputs(train, val, RARE, block_features, CFG))


def _cell(fold, control, measure):
    (row,) = [r for r in fold.controls.rows if r["control"] == control and r["measure"] == measure]
    return row


@pytest.mark.parametrize(
    ("control", "measure"),
    [
        ("copies", "copy_rate_pixel"),
        ("copies", "copy_rate_ssl"),
        ("speckle", "kid_to_class"),
        ("speckle", "prdc_precision"),
        ("blur", "kid_to_class"),
        ("blur", "prdc_precision"),
        ("other_class", "tstr_auroc"),
        ("other_class", "class_margin"),
    ],
)
def test_each_negative_control_fails_the_measure_meant_to_catch_it(fold, control, measure):
    assert measure in MEANT_TO_CATCH[control]
    cell = _cell(fold, control, measure)
    assert cell["passed"] is False, cell
    held = _cell(fold, POSITIVE, measure)
    # the real held-out patient scores on the right side of the control
    better = (
        held["value"] < cell["value"]
        if cell["direction"] == "lower"
        else (held["value"] > cell["value"])
    )
    assert better, (held, cell)


@pytest.mark.parametrize(
    "measure", ["copy_rate_pixel", "copy_rate_ssl", "tstr_auroc", "class_margin"]
)
def test_the_held_out_real_patient_passes_and_the_measure_is_a_target(fold, measure):
    assert _cell(fold, POSITIVE, measure)["passed"] is True
    assert fold.controls.usable[measure] is True


def test_the_rule_a_measure_that_lets_a_control_through_is_not_a_target(fold):
    for measure, usable in fold.controls.usable.items():
        rows = [r for r in fold.controls.rows if r["measure"] == measure]
        caught = all(
            r["passed"] is False
            for r in rows
            if r["control"] in NEGATIVE and measure in MEANT_TO_CATCH[r["control"]]
        )
        held = [r["passed"] for r in rows if r["control"] == POSITIVE] == [True]
        meant = any(measure in MEANT_TO_CATCH[c] for c in NEGATIVE)
        assert usable == (caught and held and meant), (measure, fold.controls.reasons[measure])


def test_targets_come_from_new_real_patients_not_the_rare_one(fold):
    calibrated = {r["patient"] for r in fold.calibration.per_patient}
    assert calibrated and not any(p.startswith(RARE) for p in calibrated)
    assert all(t.patients == len(calibrated) for t in fold.calibration.targets.values())


def test_generator_verdicts_use_only_usable_targets(fold):
    rare = fold.ctx.train.of_class(RARE)
    sources = frozenset(rare.patients)
    copied = judge_synthetic("copier", rare.images[:16], fold, block_features, sources)
    assert copied["passes"] is False
    assert copied["measures"]["copy_rate_pixel"]["passed"] is False
    assert set(copied["targets_used"]) == {m for m, ok in fold.controls.usable.items() if ok}
    assert "recognition" not in copied["targets_used"]
    smeared = judge_synthetic(
        "blurry", blurred(rare.images[:16], 2.0), fold, block_features, sources
    )
    assert smeared["passes"] is False


def test_summary_is_json_and_the_figure_has_every_cell(fold):
    summary = fold.summary()
    json.dumps(summary, default=float)
    assert summary["probe"]["rare_auroc"]["value"] is not None
    refs = summary["references"]["regular"]
    assert refs["val_vs_val"]["kid"]["draws"] == CFG.fidelity.resamples
    fig = controls_figure(fold.controls)
    cells = len(NEGATIVE + (POSITIVE,)) * len(fold.calibration.targets)
    assert len(fig.axes[0].patches) >= cells
    assert np.isfinite(summary["tstr_real_reference"])
