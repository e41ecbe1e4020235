"""Classification metrics and their patient-bootstrap intervals.

Point estimates come straight from scikit-learn. Intervals come from a cluster bootstrap that
resamples **patients** with replacement (frames of one patient are strongly correlated, so
resampling frames would give intervals several times too narrow). Each bootstrap draw is a vector
of patient multiplicities; a frame's weight is its patient's multiplicity, and every metric is
computed from weighted confusion matrices and weighted rank statistics, vectorised over draws.
With unit weights these formulas equal scikit-learn's (tests check it), and a class that is
absent from a draw contributes NaN for its per-class metrics and is left out of macro averages.

Macro averages run over the classes present in the truth (every class on a full split, which
``validate`` guarantees); ``zero_division=0`` for a present class that is never predicted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

# Headline metrics, in report order (per-class metrics follow as <metric>_<class>).
HEADLINE = (
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "f1_weighted",
    "balanced_accuracy",
    "roc_auc_macro",
    "video_accuracy",
)
PER_CLASS = ("precision", "recall", "f1", "roc_auc")


def _video_table(
    y: np.ndarray, prob: np.ndarray, videos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video: index of each frame's video, the video's label and whether its mean-prob call is
    right."""
    uniq, vidx = np.unique(videos, return_inverse=True)
    n_v, k = len(uniq), prob.shape[1]
    sums = np.zeros((n_v, k))
    np.add.at(sums, vidx, prob)
    labels = np.zeros(n_v, dtype=np.int64)
    labels[vidx] = y  # a video has one label (manifest invariant)
    correct = sums.argmax(1) == labels
    return vidx, labels, correct


def point_metrics(
    y: np.ndarray, prob: np.ndarray, classes: list[str], videos: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric of the report on one prediction set, computed with scikit-learn.

    Args:
        y: true class indices (N,).
        prob: class probabilities (N, K).
        classes: class names (K), used in per-class keys.
        videos: video id per frame, for video-level accuracy (mean probability per video).
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    pred = prob.argmax(1)
    present = sorted(set(y.tolist()))
    out: dict[str, float] = {
        "accuracy": accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, labels=present, average="macro", zero_division=0),
        "precision_macro": precision_score(
            y, pred, labels=present, average="macro", zero_division=0
        ),
        "recall_macro": recall_score(y, pred, labels=present, average="macro", zero_division=0),
        "f1_weighted": f1_score(y, pred, labels=present, average="weighted", zero_division=0),
    }
    with (
        warnings.catch_warnings()
    ):  # "y_pred contains classes not in y_true": handled as documented
        warnings.simplefilter("ignore", UserWarning)
        out["balanced_accuracy"] = balanced_accuracy_score(y, pred)
    p, r, f, _ = precision_recall_fscore_support(
        y, pred, labels=list(range(len(classes))), zero_division=0
    )
    aucs = []
    for k, name in enumerate(classes):
        absent = k not in present
        out[f"precision_{name}"] = (
            float(p[k]) if not (absent and (pred == k).sum() == 0) else np.nan
        )
        out[f"recall_{name}"] = np.nan if absent else float(r[k])
        out[f"f1_{name}"] = np.nan if absent else float(f[k])
        pos = y == k
        auc = roc_auc_score(pos, prob[:, k]) if 0 < pos.sum() < len(y) else np.nan
        out[f"roc_auc_{name}"] = float(auc)
        aucs.append(auc)
    out["roc_auc_macro"] = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan
    if videos is not None:
        _, _, correct = _video_table(y, prob, np.asarray(videos))
        out["video_accuracy"] = float(correct.mean())
    else:
        out["video_accuracy"] = np.nan
    return {k: float(v) for k, v in out.items()}


@dataclass(frozen=True)
class BootstrapDesign:
    """Patient multiplicities of every bootstrap draw, shared by all runs on the same split."""

    patients: np.ndarray  # unique patient ids (P,)
    counts: np.ndarray  # (B, P) how often each patient appears in each draw

    def frame_weights(self, patient_ids: np.ndarray) -> np.ndarray:
        """(B, N) weight of each frame in each draw."""
        index = {p: i for i, p in enumerate(self.patients)}
        try:
            idx = np.array([index[p] for p in patient_ids])
        except KeyError as exc:
            raise ValueError(f"patient {exc.args[0]!r} is not in the bootstrap design") from None
        return self.counts[:, idx].astype(np.float64)


def make_design(
    patient_ids: np.ndarray,
    n_draws: int,
    seed: int,
    patient_labels: dict[str, int] | None = None,
) -> BootstrapDesign:
    """Draw ``n_draws`` patient resamples (with replacement, same size as the split).

    Args:
        patient_ids: patient of each frame (only the unique values matter).
        n_draws: number of bootstrap draws.
        seed: random seed (the same seed gives the same draws).
        patient_labels: if given, resample within each class (stratified cluster bootstrap).
    """
    patients = np.array(sorted(set(np.asarray(patient_ids).tolist())))
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_draws, len(patients)), dtype=np.int32)
    if patient_labels is None:
        groups = [np.arange(len(patients))]
    else:
        labels = np.array([patient_labels[p] for p in patients])
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for g in groups:
        picks = rng.integers(0, len(g), size=(n_draws, len(g)))
        for j in range(len(g)):  # len(g) is the number of patients: small
            np.add.at(counts, (np.arange(n_draws), g[picks[:, j]]), 1)
    return BootstrapDesign(patients=patients, counts=counts)


def _weighted_auc(score: np.ndarray, pos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC per draw (ties count one half); NaN when a side is empty."""
    order = np.argsort(score, kind="stable")
    s, is_pos, wo = score[order], pos[order], w[:, order]
    neg = wo * ~is_pos
    cneg = np.cumsum(neg, axis=1)
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    gid = np.repeat(np.arange(len(starts)), ends - starts)
    before = np.where(starts > 0, cneg[:, np.maximum(starts - 1, 0)], 0.0)
    tied = cneg[:, ends - 1] - before
    credit = before[:, gid] + 0.5 * tied[:, gid]
    wpos = wo * is_pos
    num = (wpos * credit).sum(1)
    den = wpos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def weighted_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    weights: np.ndarray,
    classes: list[str],
    videos: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of :func:`point_metrics` for each row of frame ``weights`` (B, N).

    Integer weights are the same as repeating frames; unit weights reproduce scikit-learn.
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    k = len(classes)
    pred = prob.argmax(1)
    onehot = np.zeros((len(y), k * k))
    onehot[np.arange(len(y)), y * k + pred] = 1.0
    cm = (w @ onehot).reshape(-1, k, k)  # (B, true, pred)
    support = cm.sum(2)
    predicted = cm.sum(1)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    total = support.sum(1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(predicted > 0, tp / predicted, np.where(present, 0.0, np.nan))
        rec = np.where(present, tp / support, np.nan)
        f1 = np.where(present, 2 * tp / (support + predicted), np.nan)
        n_present = present.sum(1)
        prec_present = np.where(present, prec, 0.0)

        def macro(v: np.ndarray) -> np.ndarray:
            return np.where(present, v, 0.0).sum(1) / n_present

        out: dict[str, np.ndarray] = {
            "accuracy": tp.sum(1) / total,
            "f1_macro": macro(f1),
            "precision_macro": prec_present.sum(1) / n_present,
            "recall_macro": macro(rec),
            "f1_weighted": (np.where(present, f1, 0.0) * support).sum(1) / total,
            "balanced_accuracy": macro(rec),
        }
    aucs = []
    for c, name in enumerate(classes):
        out[f"precision_{name}"] = prec[:, c]
        out[f"recall_{name}"] = rec[:, c]
        out[f"f1_{name}"] = f1[:, c]
        auc = _weighted_auc(prob[:, c], y == c, w)
        out[f"roc_auc_{name}"] = auc
        aucs.append(auc)
    with np.errstate(invalid="ignore"):
        stacked = np.stack(aucs, 1)
        finite = np.isfinite(stacked)
        out["roc_auc_macro"] = np.where(
            finite.any(1), np.nansum(stacked, 1) / np.maximum(finite.sum(1), 1), np.nan
        )
    if videos is not None:
        vidx, _, correct = _video_table(y, prob, np.asarray(videos))
        # a video's weight is its patient's multiplicity (all its frames share it)
        first = np.unique(vidx, return_index=True)[1]
        vw = w[:, first]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["video_accuracy"] = (vw * correct).sum(1) / vw.sum(1)
    else:
        out["video_accuracy"] = np.full(w.shape[0], np.nan)
    return out


def interval(draws: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of the finite draws (NaN, NaN when none is finite)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarise(value: float, draws: np.ndarray, ci: float) -> dict[str, float]:
    """``{value, lo, hi, defined}``: point estimate, interval, share of draws where it exists."""
    lo, hi = interval(draws, ci)
    return {
        "value": float(value),
        "lo": lo,
        "hi": hi,
        "defined": float(np.isfinite(draws).mean()) if draws.size else 0.0,
    }
