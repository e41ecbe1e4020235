"""The oracle's true effect at tiny size: both strategies trained by the training stage's code
on independent phantom training sets, scored on new patients that nothing trained on."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lusaug.calibration.true_effect import (
    ENDPOINTS,
    SPLITS_FILE,
    TrueEffectDesign,
    design_from_split,
    estimate_true_effect,
)

ONE = {"regular": 1, "covid": 1, "pneumonia": 1, "viral": 1}


def _design(**kw):
    base = {
        "train_patients": {"regular": 2, "covid": 2, "pneumonia": 1, "viral": 1},
        "val_patients": ONE,
        "test_patients": {"regular": 1, "covid": 1, "pneumonia": 1, "viral": 2},
        "training_sets": 2,
        "oracle_images": 5,
        "seeds": (0,),
        "architecture": "resnet",
    }
    return TrueEffectDesign(**{**base, **kw})


@pytest.fixture(scope="module")
def oracle_effect(micro_params, tmp_path_factory):
    work = tmp_path_factory.mktemp("true-effect")
    return estimate_true_effect(micro_params, _design(), 11, work, progress=False), work


def test_oracle_effect_trains_on_the_oracle_images_and_tests_on_new_patients(oracle_effect):
    result, work = oracle_effect
    runs = result["runs"]
    assert len(runs) == 2 and list(runs["training_set"]) == [0, 1]
    assert runs["phantom_seed"].nunique() == 2  # independent training sets
    assert (runs["treatment_synthetic"] == 5).all() and (runs["control_synthetic"] == 0).all()
    assert (runs["treatment_train_rare"] == runs["control_train_rare"] + 5).all()
    train_ids = set()
    for t in (0, 1):
        split = pd.read_csv(work / f"set-{t:03d}" / SPLITS_FILE, dtype=str)
        train_ids |= set(split["patient_id"])
    test_ids = set(result["test_patients"])
    assert len(test_ids) == 5 and not test_ids & train_ids
    for ep in ENDPOINTS:
        effect = result["effects"][ep]
        assert effect["n_training_sets"] == 2 and math.isfinite(effect["se"])
        diffs = runs[f"treatment_{ep}"] - runs[f"control_{ep}"]
        assert effect["mean"] == pytest.approx(diffs.mean())


def test_a_strategy_against_itself_has_exactly_no_effect(micro_params, tmp_path):
    design = _design(training_sets=1, treatment="baseline", control="baseline")
    result = estimate_true_effect(micro_params, design, 11, tmp_path, progress=False)
    for ep in ENDPOINTS:
        assert result["effects"][ep]["mean"] == 0.0  # same seed, same data: same weights


def test_design_from_a_fold_file():
    split = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "d", "e"],
            "label": ["viral", "viral", "viral", "covid", "covid", "covid"],
            "split": ["train", "train", "train", "train", "val", "test"],
        }
    )
    design = design_from_split(
        split, test_patients=ONE, training_sets=1, oracle_images=1, seeds=(0,), architecture="r"
    )
    assert design.train_patients == {"covid": 1, "viral": 2}
    assert design.val_patients == {"covid": 1}
