"""Metrics equal scikit-learn; the patient bootstrap behaves like a bootstrap should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from lusaug.models.statistics import (
    interval,
    make_design,
    point_metrics,
    weighted_metrics,
)

CLASSES = ["regular", "covid", "pneumonia", "viral"]


def _fixed_predictions(n: int = 120, seed: int = 3, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:  # coarse scores: plenty of ties for the rank statistics
        prob = np.round(prob, decimals)
    videos = np.array([f"v{i // 6}-{y[i]}" for i in range(n)])
    return y, prob, videos


def _assert_same(a: dict, b: dict, keys=None) -> None:
    for k in keys or a:
        assert np.isclose(a[k], b[k], equal_nan=True, atol=1e-12), (k, a[k], b[k])


def test_point_metrics_equal_sklearn():
    y, prob, videos = _fixed_predictions()
    pred = prob.argmax(1)
    m = point_metrics(y, prob, CLASSES, videos)
    assert m["accuracy"] == accuracy_score(y, pred)
    assert m["f1_macro"] == f1_score(y, pred, average="macro")
    assert m["f1_weighted"] == f1_score(y, pred, average="weighted")
    assert m["precision_macro"] == precision_score(y, pred, average="macro")
    assert m["recall_macro"] == recall_score(y, pred, average="macro")
    assert m["balanced_accuracy"] == balanced_accuracy_score(y, pred)
    p, r, f, _ = precision_recall_fscore_support(y, pred)
    for k, c in enumerate(CLASSES):
        assert (m[f"precision_{c}"], m[f"recall_{c}"], m[f"f1_{c}"]) == (p[k], r[k], f[k])
        assert m[f"roc_auc_{c}"] == roc_auc_score(y == k, prob[:, k])
    assert np.isclose(m["roc_auc_macro"], roc_auc_score(y, prob, multi_class="ovr"))
    df = pd.DataFrame(prob).assign(video=videos, y=y).groupby("video").mean()
    assert m["video_accuracy"] == np.mean(df[[0, 1, 2, 3]].to_numpy().argmax(1) == df["y"])


@pytest.mark.parametrize("decimals", [None, 1])
def test_unit_weights_reproduce_sklearn(decimals):
    y, prob, videos = _fixed_predictions(decimals=decimals)
    w = weighted_metrics(y, prob, np.ones((1, len(y))), CLASSES, videos)
    _assert_same(point_metrics(y, prob, CLASSES, videos), {k: v[0] for k, v in w.items()})


def test_integer_weights_equal_repeated_frames():
    """A bootstrap draw (weights = multiplicities) equals scikit-learn on the repeated rows."""
    y, prob, _ = _fixed_predictions(decimals=1)
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 4, size=(5, len(y)))
    weights[:, y == 3] = 0  # one draw-family without any viral frame
    weights[1:, y == 3] = rng.integers(1, 3, size=(4, int((y == 3).sum())))
    draws = weighted_metrics(y, prob, weights, CLASSES, None)
    for b in range(len(weights)):
        idx = np.repeat(np.arange(len(y)), weights[b])
        expect = point_metrics(y[idx], prob[idx], CLASSES, None)
        _assert_same(
            expect,
            {k: v[b] for k, v in draws.items()},
            keys=[k for k in expect if k != "video_accuracy"],
        )


def test_absent_class_is_nan_and_left_out_of_macro():
    y, prob, _ = _fixed_predictions()
    keep = y != 3
    w = keep.astype(float)[None, :]
    m = weighted_metrics(y, prob, w, CLASSES, None)
    assert np.isnan(m["recall_viral"][0]) and np.isnan(m["roc_auc_viral"][0])
    pred = prob.argmax(1)
    labels = [0, 1, 2]
    expect = f1_score(y[keep], pred[keep], labels=labels, average="macro", zero_division=0)
    assert np.isclose(m["f1_macro"][0], expect)


def _simulate(n_patients: int, rng: np.random.Generator, frames: int = 20, acc: float = 0.7):
    """Two classes; each patient has its own accuracy (strong within-patient correlation)."""
    p_patient = rng.beta(acc * 2, (1 - acc) * 2, n_patients)  # ICC about 1/3
    patients = np.repeat(np.arange(n_patients), frames)
    y = np.repeat(rng.integers(0, 2, n_patients), frames)
    correct = rng.random(len(y)) < p_patient[patients]
    pred = np.where(correct, y, 1 - y)
    prob = np.eye(2)[pred] * 0.8 + 0.1
    return y, prob, patients.astype(str)


def _accuracy_interval(y, prob, patients, n_draws: int, seed: int) -> tuple[float, float]:
    design = make_design(patients, n_draws, seed)
    draws = weighted_metrics(y, prob, design.frame_weights(patients), ["a", "b"], None)
    return interval(draws["accuracy"], 0.95)


def test_intervals_shrink_with_more_patients():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (10, 80):
        lo, hi = _accuracy_interval(*_simulate(n, rng), n_draws=400, seed=0)
        widths[n] = hi - lo
    # width ~ 1/sqrt(patients): 8x the patients -> about 0.35x the width
    assert widths[80] < 0.6 * widths[10]


def test_patient_intervals_cover_the_truth_and_frame_intervals_do_not():
    """Coverage over repeated simulated studies: ~95% when resampling patients, far less when
    resampling frames as if they were independent."""
    rng = np.random.default_rng(7)
    sims, truth = 120, 0.7
    hits_patient = hits_frame = 0
    for s in range(sims):
        y, prob, patients = _simulate(25, rng, acc=truth)
        lo, hi = _accuracy_interval(y, prob, patients, n_draws=250, seed=s)
        hits_patient += lo <= truth <= hi
        frame_ids = np.arange(len(y)).astype(str)
        lo, hi = _accuracy_interval(y, prob, frame_ids, n_draws=250, seed=s)
        hits_frame += lo <= truth <= hi
    assert 0.85 <= hits_patient / sims <= 1.0
    assert hits_frame / sims < 0.75


def test_design_is_seeded_and_stratified_keeps_every_class():
    patients = np.array([f"p{i}" for i in range(9)])
    a, b = make_design(patients, 50, 3), make_design(patients, 50, 3)
    assert np.array_equal(a.counts, b.counts) and (a.counts.sum(1) == 9).all()
    labels = {p: (0 if i < 8 else 1) for i, p in enumerate(patients)}
    s = make_design(patients, 200, 3, labels)
    assert (s.counts[:, -1] == 1).all()  # the one class-1 patient is in every draw
    assert (a.counts[:, -1] == 0).any()  # plain resampling sometimes drops it
