"""Per-patient endpoints equal scikit-learn on the frames they are defined on."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

from lusaug.inference import (
    InferenceError,
    metric_from_counts,
    patient_counts,
    rare_patient_endpoints,
)
from lusaug.inference.simulate import CONTROL, SimDesign, simulate

RARE = 3


@pytest.fixture(scope="module")
def study():
    return simulate(SimDesign(patients_per_class=(6, 5, 4, 5), seeds=3), 2)


def test_per_patient_auroc_ap_recall_equal_sklearn_on_that_patients_positives(study):
    probs = study.probs[CONTROL]
    ends = rare_patient_endpoints(study.y, study.patient_ids, probs, RARE, seeds=[7, 8, 9])
    assert ends.seeds == [7, 8, 9] and len(ends.patients) == 5
    assert ends.values["auroc"].shape == (3, 5)
    negatives = study.y != RARE
    for r, p in enumerate(probs):
        for i, pid in enumerate(ends.patients):
            mine = (study.patient_ids == pid) & ~negatives
            rows = mine | negatives  # this patient's rare frames against every other-class frame
            truth, score = study.y[rows] == RARE, p[rows, RARE]
            assert ends.values["auroc"][r, i] == pytest.approx(roc_auc_score(truth, score))
            assert ends.values["ap"][r, i] == pytest.approx(average_precision_score(truth, score))
            hit = p[mine].argmax(1) == RARE
            assert ends.values["recall"][r, i] == pytest.approx(hit.mean())
            assert ends.frames[i] == mine.sum()
        truth = study.y == RARE
        assert ends.pooled["auroc"][r] == pytest.approx(roc_auc_score(truth, p[:, RARE]))
        assert ends.pooled["ap"][r] == pytest.approx(average_precision_score(truth, p[:, RARE]))
        assert ends.pooled["recall"][r] == pytest.approx(recall_score(truth, p.argmax(1) == RARE))


def test_ties_are_counted_as_scikit_learn_counts_them():
    # scores rounded to one decimal: many ties between positives and negatives
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 0])
    pid = np.array(["a", "a", "a", "n", "n", "m", "m", "b", "b", "m"])
    s = np.array([0.7, 0.4, 0.4, 0.4, 0.7, 0.1, 0.4, 0.9, 0.4, 0.7])
    probs = np.stack([1 - s, s], 1)
    ends = rare_patient_endpoints(y, pid, probs, rare=1)
    for i, who in enumerate(ends.patients):
        rows = (pid == who) | (y == 0)
        assert ends.values["auroc"][0, i] == pytest.approx(roc_auc_score(y[rows], s[rows]))
        assert ends.values["ap"][0, i] == pytest.approx(average_precision_score(y[rows], s[rows]))


def test_population_metrics_from_per_patient_counts_equal_sklearn(study):
    counts = patient_counts(study.y, study.patient_ids, study.probs[CONTROL])
    assert counts.counts.shape == (3, 20, 4, 4)
    assert counts.counts.sum() == 3 * study.y.size
    np.testing.assert_array_equal(counts.strata, np.repeat([0, 1, 2, 3], [6, 5, 4, 5]))
    for r, p in enumerate(study.probs[CONTROL]):
        pred, total = p.argmax(1), counts.counts[r].sum(0)
        assert metric_from_counts(total, "accuracy") == pytest.approx(
            accuracy_score(study.y, pred)
        )
        assert metric_from_counts(total, "f1_macro") == pytest.approx(
            f1_score(study.y, pred, average="macro", zero_division=0)
        )
        assert metric_from_counts(total, "balanced_accuracy") == pytest.approx(
            balanced_accuracy_score(study.y, pred)
        )
    # leaving a patient out is subtracting its matrix
    without_first = counts.counts[0].sum(0) - counts.counts[0, 0]
    keep = study.patient_ids != counts.patients[0]
    pred = study.probs[CONTROL][0].argmax(1)
    assert metric_from_counts(without_first, "f1_macro") == pytest.approx(
        f1_score(study.y[keep], pred[keep], average="macro", zero_division=0)
    )


def test_select_keeps_the_named_seeds_in_order(study):
    ends, counts = study.setting(CONTROL)
    first = ends.select([study.seeds[CONTROL][2], study.seeds[CONTROL][0]])
    np.testing.assert_array_equal(first.values["ap"], ends.values["ap"][[2, 0]])
    assert counts.select(study.seeds[CONTROL][:1]).counts.shape[0] == 1
    with pytest.raises(InferenceError, match="not among"):
        ends.select([12345])


def test_bad_input_names_the_problem(study):
    probs = study.probs[CONTROL]
    with pytest.raises(InferenceError, match="positives"):
        rare_patient_endpoints(np.zeros_like(study.y), study.patient_ids, probs, RARE)
    with pytest.raises(InferenceError, match="frames"):
        rare_patient_endpoints(study.y[:-1], study.patient_ids[:-1], probs, RARE)
    with pytest.raises(InferenceError, match="distinct seeds"):
        rare_patient_endpoints(study.y, study.patient_ids, probs, RARE, seeds=[1, 1, 2])
    with pytest.raises(InferenceError, match="unknown population metric"):
        metric_from_counts(np.eye(2), "auc")
