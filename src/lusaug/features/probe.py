"""Patient-grouped linear probe: how well does a frozen feature space see the classes?

A logistic regression (scikit-learn; standardised features, balanced class weights, L2 with
``features.probe.c``) is fitted on the fold's TRAINING patients and scored on its VALIDATION
patients (the split file keeps them disjoint): balanced accuracy and the rare class's one-vs-rest
AUROC. Intervals resample validation PATIENTS within each class (every frame of a drawn patient
comes along), so a patient with 30 frames counts once, not 30 times. With one rare-class
validation patient per fold, no interval can include the variance between rare patients: the
per-patient table says so by listing each patient's recall.

:func:`linear_probe` works for any extractor ``uint8 (N, H, W) -> (N, F)``: the SSL encoder's
:meth:`SslEncoder.features`, or the supervised encoder's ``FeatureSpace.features``, so the two
can be reported side by side on the same patients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lusaug.core.config.features_sections import ProbeParams
from lusaug.features.estimates import (
    Estimate,
    auroc,
    balanced_accuracy,
    patient_draws,
    percentile_interval,
)
from lusaug.features.frame_table import FeaturesError, FrameTable

Extractor = Callable[[np.ndarray], np.ndarray]


@dataclass
class LabelledFeatures:
    """Features (N, F) with each row's class name and patient id."""

    feats: np.ndarray
    labels: np.ndarray
    patients: np.ndarray

    @classmethod
    def embed(cls, frames: FrameTable, extractor: Extractor) -> LabelledFeatures:
        return cls(
            np.asarray(extractor(frames.images)),
            frames.column("label"),
            frames.column("patient_id"),
        )


@dataclass
class ProbeResult:
    balanced_accuracy: Estimate
    rare_auroc: Estimate
    classes: list[str]
    patients: dict[str, dict[str, int]]  # split -> class -> patients
    per_patient: list[dict[str, Any]] = field(default_factory=list)  # validation patients
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "balanced_accuracy": self.balanced_accuracy.as_dict(),
            "rare_auroc": self.rare_auroc.as_dict(),
            "classes": self.classes,
            "patients": self.patients,
            "per_patient": self.per_patient,
            "note": self.note,
        }


def fit_logistic(feats: np.ndarray, labels: np.ndarray, cfg: ProbeParams) -> Pipeline:
    """Standardise + balanced L2 logistic regression (the probe, and every LR of the protocol)."""
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=cfg.c, max_iter=cfg.max_iter, class_weight="balanced"),
    )
    return model.fit(np.asarray(feats, np.float64), np.asarray(labels))


def _scores(labels: np.ndarray, pred: np.ndarray, rare_p: np.ndarray, rare: str) -> tuple:
    return balanced_accuracy(labels, pred), auroc(labels == rare, rare_p)


def _patient_counts(data: LabelledFeatures) -> dict[str, int]:
    return {c: len(set(data.patients[data.labels == c])) for c in sorted(set(data.labels))}


def _per_patient(val: LabelledFeatures, pred: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(set(val.patients)):
        m = val.patients == p
        label = str(val.labels[m][0])
        rows.append(
            {
                "patient": p,
                "label": label,
                "frames": int(m.sum()),
                "recall": float((pred[m] == label).mean()),
            }
        )
    return rows


def probe_features(
    train: LabelledFeatures, val: LabelledFeatures, rare: str, cfg: ProbeParams, seed: int = 0
) -> ProbeResult:
    """Fit on ``train``, score on ``val`` (patient-disjoint), intervals over val patients."""
    shared = sorted(set(train.patients) & set(val.patients))
    if shared:
        raise FeaturesError(f"patients {shared[:5]} are in both probe sets: the probe is grouped")
    if len(set(train.labels)) < 2:
        raise FeaturesError("the probe needs at least two classes among the training frames")
    model = fit_logistic(train.feats, train.labels, cfg)
    classes = [str(c) for c in model.classes_]
    pred = model.predict(np.asarray(val.feats, np.float64))
    rare_p = (
        model.predict_proba(np.asarray(val.feats, np.float64))[:, classes.index(rare)]
        if rare in classes
        else np.zeros(len(val.labels))
    )
    bacc, auroc = _scores(val.labels, pred, rare_p, rare)
    draws_b, draws_a = [], []
    for rows in patient_draws(val.patients, val.labels, cfg.resamples, seed):
        b, a = _scores(val.labels[rows], pred[rows], rare_p[rows], rare)
        draws_b.append(b)
        draws_a.append(a)
    n_rare = len(set(val.patients[val.labels == rare]))
    return ProbeResult(
        balanced_accuracy=Estimate(bacc, *percentile_interval(draws_b, cfg.ci), len(draws_b)),
        rare_auroc=Estimate(
            auroc,
            *percentile_interval(draws_a, cfg.ci),
            sum(a is not None for a in draws_a),
        ),
        classes=classes,
        patients={"train": _patient_counts(train), "val": _patient_counts(val)},
        per_patient=_per_patient(val, pred),
        note=f"intervals resample validation patients within each class; {n_rare} {rare} "
        "validation patient(s): the rare-class AUROC interval holds only the other classes' "
        "patient variance when that is 1",
    )


def linear_probe(
    extractor: Extractor,
    train: FrameTable,
    val: FrameTable,
    rare: str,
    cfg: ProbeParams,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> ProbeResult:
    """The probe for any feature extractor (uint8 (N, H, W) -> (N, F)) on a fold's frames."""
    if classes is not None:
        unknown = sorted(set(train.column("label")) - set(classes))
        if unknown:
            raise FeaturesError(f"labels {unknown} are not among the classes {list(classes)}")
    return probe_features(
        LabelledFeatures.embed(train, extractor),
        LabelledFeatures.embed(val, extractor),
        rare,
        cfg,
        seed,
    )
