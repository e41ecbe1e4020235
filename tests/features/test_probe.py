"""The patient-grouped linear probe: fitted on training patients, intervals over patients."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.core.config.features_sections import default_features
from lusaug.features.estimates import patient_draws
from lusaug.features.frame_table import FeaturesError
from lusaug.features.probe import LabelledFeatures, linear_probe, probe_features
from tests.features.helpers import RARE, block_features, toy_fold

CFG = default_features(probe={"resamples": 300}).probe


def _patients(n_per_class: int, frames: int, rng, prefix: str, shift: float = 0.0):
    """Two Gaussian classes; each patient has its own offset (patients cluster)."""
    feats, labels, patients = [], [], []
    for label, centre in (("common", 0.0), (RARE, 1.5)):
        for i in range(n_per_class):
            offset = rng.normal(0, 1.0, 4)
            feats.append(centre + shift + offset + rng.normal(0, 0.2, (frames, 4)))
            labels += [label] * frames
            patients += [f"{prefix}-{label}-{i}"] * frames
    return LabelledFeatures(np.concatenate(feats), np.array(labels), np.array(patients))


def test_patient_draws_bring_whole_patients():
    patients = np.array(["a"] * 3 + ["b"] * 5 + ["c"] * 2)
    strata = np.array(["x"] * 8 + ["y"] * 2)
    for rows in patient_draws(patients, strata, resamples=50, seed=0):
        drawn = patients[rows]
        for p in set(drawn):
            assert (drawn == p).sum() % (patients == p).sum() == 0, "a patient comes whole"
        assert (drawn == "c").sum() == 2, "each stratum keeps its patient count"


def test_intervals_resample_patients_not_frames():
    """Repeating every validation frame 10 times changes nothing: the unit is the patient.
    (A frame bootstrap would shrink the interval by about sqrt(10).)"""
    rng = np.random.default_rng(0)
    train = _patients(6, 8, rng, "t")
    val = _patients(5, 8, rng, "v")
    once = probe_features(train, val, RARE, CFG, seed=1)
    tenfold = LabelledFeatures(
        np.repeat(val.feats, 10, axis=0),
        np.repeat(val.labels, 10),
        np.repeat(val.patients, 10),
    )
    ten = probe_features(train, tenfold, RARE, CFG, seed=1)
    assert ten.balanced_accuracy == once.balanced_accuracy
    assert ten.rare_auroc == once.rare_auroc
    width = once.balanced_accuracy.high - once.balanced_accuracy.low
    assert width > 0.02, "patients differ, so the interval is not degenerate"


def test_a_patient_in_both_sets_is_refused():
    rng = np.random.default_rng(0)
    train = _patients(3, 4, rng, "same")
    with pytest.raises(FeaturesError, match="both probe sets"):
        probe_features(train, train, RARE, CFG)


def test_probe_on_frames_with_any_extractor():
    train, val = toy_fold()
    good = linear_probe(block_features, train, val, RARE, CFG)
    noise = linear_probe(
        lambda imgs: np.random.default_rng(len(imgs)).normal(size=(len(imgs), 8)),
        train,
        val,
        RARE,
        CFG,
    )
    assert good.balanced_accuracy.value > 0.9 and good.rare_auroc.value > 0.9
    assert noise.balanced_accuracy.value < 0.6
    assert good.patients["val"][RARE] == 1
    assert {r["patient"] for r in good.per_patient} == set(val.column("patient_id"))


def test_fast_metrics_match_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from lusaug.features.estimates import auroc, balanced_accuracy

    rng = np.random.default_rng(5)
    for _ in range(20):
        positive = rng.integers(0, 2, 40).astype(bool)
        scores = rng.integers(0, 6, 40)  # ties on purpose
        assert auroc(positive, scores) == pytest.approx(roc_auc_score(positive, scores))
        labels, pred = rng.integers(0, 4, 40), rng.integers(0, 4, 40)
        assert balanced_accuracy(labels, pred) == pytest.approx(
            balanced_accuracy_score(labels, pred)
        )
    assert auroc(np.ones(3, bool), np.arange(3)) is None
