"""Per-patient values of every endpoint, from pooled out-of-fold predictions, per seed run.

Two shapes of endpoint, because they need two kinds of inference:

* **Rare-class endpoints that decompose per rare-class patient** (:class:`PatientEndpoints`).
  For each patient with frames of the rare class, per run:

  - ``recall``: the share of the patient's rare-class frames predicted as the rare class;
  - ``auroc``: the rare class's one-vs-rest AUROC with **this patient's** rare-class frames as
    positives and **all** frames of the other classes (every patient) as negatives;
  - ``ap``: the average precision of the same positives against the same negatives.

  The mean over patients is the endpoint of a setting ("the average rare-class patient"), and a
  paired difference per patient is what the sign-flip test and the t interval use. The pooled
  values (all rare-class frames as positives: scikit-learn's ``recall_score`` /
  ``roc_auc_score`` / ``average_precision_score`` one-vs-rest) are kept beside them, per run.
  AUROC and AP are threshold-free, so they move less than recall when a strategy only shifts the
  class prior.

* **Population metrics** (accuracy, macro-F1, balanced accuracy), which do not decompose per rare
  patient. :class:`PatientCounts` keeps one confusion matrix per patient and run; a metric on any
  set of patients (all of them, all but one for the jackknife, a bootstrap draw) is a metric of a
  sum of those matrices, which is cheap and exact.

Every array has the runs (seeds) first, so a setting of S seeds is one object, and the placebo's
two halves are ``x.select(first)`` and ``x.select(second)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lusaug.inference.types import InferenceError

POPULATION_METRICS = ("accuracy", "f1_macro", "balanced_accuracy")


def _as_runs(probs: np.ndarray, n_frames: int) -> np.ndarray:
    """Probabilities as (runs, frames, classes)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[1] != n_frames:
        raise InferenceError(
            f"probabilities must be (runs, {n_frames} frames, classes), got {np.shape(probs)}"
        )
    return p


def _seed_list(seeds: Sequence[int] | None, n_runs: int) -> list[int]:
    out = list(range(n_runs)) if seeds is None else [int(s) for s in seeds]
    if len(out) != n_runs or len(set(out)) != n_runs:
        raise InferenceError(f"need {n_runs} distinct seeds, one per run; got {seeds}")
    return out


@dataclass(frozen=True)
class PatientEndpoints:
    """Rare-class endpoints of one setting: per run (seed) and rare-class patient."""

    patients: list[str]  # rare-class patients (P), sorted
    frames: list[int]  # rare-class frames of each patient
    seeds: list[int]  # runs (S)
    values: dict[str, np.ndarray]  # endpoint -> (S, P)
    pooled: dict[str, np.ndarray]  # endpoint -> (S,): all rare-class frames as positives

    def select(self, seeds: Sequence[int]) -> PatientEndpoints:
        """The same setting restricted to ``seeds`` (in that order)."""
        idx = _seed_index(self.seeds, seeds)
        return PatientEndpoints(
            self.patients,
            self.frames,
            [self.seeds[i] for i in idx],
            {k: v[idx] for k, v in self.values.items()},
            {k: v[idx] for k, v in self.pooled.items()},
        )

    def seed_mean(self, endpoint: str) -> np.ndarray:
        """(P,) per-patient value averaged over the runs."""
        return self.values[endpoint].mean(0)


@dataclass(frozen=True)
class PatientCounts:
    """Per-patient confusion matrices of one setting, per run (for population metrics)."""

    patients: list[str]  # every patient (P), sorted
    strata: np.ndarray  # (P,) each patient's class: its most frequent true class
    seeds: list[int]  # runs (S)
    counts: np.ndarray  # (S, P, K, K): frames of patient p with (true, predicted) class

    def select(self, seeds: Sequence[int]) -> PatientCounts:
        idx = _seed_index(self.seeds, seeds)
        return PatientCounts(
            self.patients, self.strata, [self.seeds[i] for i in idx], self.counts[idx]
        )


def _seed_index(have: Sequence[int], want: Sequence[int]) -> list[int]:
    missing = sorted(set(want) - set(have))
    if missing:
        raise InferenceError(f"seeds {missing} are not among the setting's seeds {list(have)}")
    return [list(have).index(s) for s in want]


def rare_patient_endpoints(
    y: np.ndarray,
    patient_ids: np.ndarray,
    probs: np.ndarray,
    rare: int,
    seeds: Sequence[int] | None = None,
) -> PatientEndpoints:
    """Recall, AUROC and AP of the rare class per rare-class patient and run.

    Args:
        y: true class index of every pooled out-of-fold frame (N,).
        patient_ids: patient of every frame (N,).
        probs: predicted class probabilities, (runs, N, K) or (N, K) for one run.
        rare: index of the rare class.
        seeds: the run of each row of ``probs`` (default 0..S-1).
    """
    y = np.asarray(y)
    pid = np.asarray(patient_ids).astype(str)
    p = _as_runs(probs, len(y))
    if pid.shape != y.shape:
        raise InferenceError(f"{len(pid)} patient ids for {len(y)} frames")
    if not 0 <= rare < p.shape[2]:
        raise InferenceError(f"rare class index {rare} outside 0..{p.shape[2] - 1}")
    pos = y == rare
    if not pos.any() or pos.all():
        raise InferenceError(
            f"rare class {rare}: {int(pos.sum())} of {len(y)} frames are positives; "
            "AUROC and AP need both positives and negatives"
        )
    patients, pos_patient = np.unique(pid[pos], return_inverse=True)
    n_pat = len(patients)
    frames = np.bincount(pos_patient, minlength=n_pat)
    same_patient = pos_patient[:, None] == pos_patient[None, :]
    names = ("recall", "auroc", "ap")
    values = {k: np.empty((p.shape[0], n_pat)) for k in names}
    pooled = {k: np.empty(p.shape[0]) for k in names}
    for r, run in enumerate(p):
        score = run[:, rare]
        hit = (run.argmax(1) == rare)[pos].astype(float)
        neg = np.sort(score[~pos])
        s = score[pos]
        below = np.searchsorted(neg, s, side="left")  # negatives scored strictly lower
        at_most = np.searchsorted(neg, s, side="right")
        auc_credit = (below + 0.5 * (at_most - below)) / len(neg)  # Mann-Whitney, ties 1/2
        fp = len(neg) - below  # negatives at or above this positive's score
        at_or_above = s[None, :] >= s[:, None]  # [j, l]: positive l at or above positive j
        tp_own = (at_or_above & same_patient).sum(1)
        tp_all = at_or_above.sum(1)
        for name, per_pos in (
            ("recall", hit),
            ("auroc", auc_credit),
            ("ap", tp_own / (tp_own + fp)),
        ):
            values[name][r] = np.bincount(pos_patient, per_pos, n_pat) / frames
        pooled["recall"][r] = hit.mean()
        pooled["auroc"][r] = auc_credit.mean()
        pooled["ap"][r] = (tp_all / (tp_all + fp)).mean()
    return PatientEndpoints(
        [str(x) for x in patients],
        frames.tolist(),
        _seed_list(seeds, p.shape[0]),
        values,
        pooled,
    )


def patient_counts(
    y: np.ndarray,
    patient_ids: np.ndarray,
    probs: np.ndarray,
    seeds: Sequence[int] | None = None,
) -> PatientCounts:
    """Per-patient (true, predicted) confusion counts of every run (argmax predictions).

    Args:
        y: true class index of every pooled out-of-fold frame (N,).
        patient_ids: patient of every frame (N,).
        probs: predicted class probabilities, (runs, N, K) or (N, K).
        seeds: the run of each row of ``probs`` (default 0..S-1).
    """
    y = np.asarray(y)
    pid = np.asarray(patient_ids).astype(str)
    p = _as_runs(probs, len(y))
    if pid.shape != y.shape:
        raise InferenceError(f"{len(pid)} patient ids for {len(y)} frames")
    k = p.shape[2]
    patients, pidx = np.unique(pid, return_inverse=True)
    n_pat = len(patients)
    by_class = np.zeros((n_pat, k), dtype=np.int64)
    np.add.at(by_class, (pidx, y), 1)
    strata = by_class.argmax(1)  # ties: the lower class index
    pred = p.argmax(2)  # (S, N)
    cell = (pidx * k + y) * k  # + predicted class
    counts = np.stack([np.bincount(cell + pr, minlength=n_pat * k * k) for pr in pred])
    return PatientCounts(
        [str(x) for x in patients],
        strata,
        _seed_list(seeds, p.shape[0]),
        counts.reshape(len(pred), n_pat, k, k),
    )


def metric_from_counts(counts: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of confusion matrices (..., K, K) -> (...).

    Macro averages run over the classes present in the truth of each matrix, with
    ``zero_division=0`` for a present class never predicted (as :mod:`lusaug.models.statistics`).
    """
    c = np.asarray(counts, dtype=np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    support = c.sum(-1)
    predicted = c.sum(-2)
    present = support > 0
    n_present = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return tp.sum(-1) / support.sum(-1)
        if metric == "f1_macro":
            f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
            return f1.sum(-1) / n_present
        if metric == "balanced_accuracy":
            rec = np.where(present, tp / np.maximum(support, 1), 0.0)
            return rec.sum(-1) / n_present
    raise InferenceError(f"unknown population metric {metric!r}; known: {POPULATION_METRICS}")


def same_patients(
    a: PatientEndpoints | PatientCounts, b: PatientEndpoints | PatientCounts
) -> None:
    """Raise unless two settings were scored on the same patients (a paired comparison)."""
    if a.patients != b.patients:
        only = sorted(set(a.patients) ^ set(b.patients))[:5]
        raise InferenceError(
            f"the two settings were scored on different patients (e.g. {only}): "
            "a paired comparison needs the same pooled out-of-fold frames"
        )
