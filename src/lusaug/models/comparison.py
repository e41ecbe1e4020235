"""Pooled out-of-fold metrics with **descriptive** patient-bootstrap intervals, and the table of
rare-class patients.

Every setting (strategy x architecture) is the mean over its seeds of metrics computed on the
pooled out-of-fold predictions (every frame predicted once, by its test fold's model). The
intervals here come from a percentile cluster bootstrap over **all** patients, stratified by
class by default so that every draw holds every class. They have no seed term and, with a
handful of patients in a class, too few distinct draws and tails that are too short: they are
labelled descriptive and never carry a verdict. The verdicts, and the intervals of the metrics
they rest on (patients and seeds), are :mod:`lusaug.models.verdicts`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lusaug.core.config import EvaluateParams
from lusaug.models.oof import RunOOF
from lusaug.models.statistics import (
    BootstrapDesign,
    make_design,
    point_metrics,
    summarise,
    weighted_metrics,
)


def patient_labels(frames: pd.DataFrame, classes: Sequence[str]) -> dict[str, int]:
    """Each patient's stratum: its most frequent class (ties: class order)."""
    counts = frames.groupby(["patient_id", "label"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(classes), fill_value=0)
    return {str(p): int(np.argmax(row.to_numpy())) for p, row in counts.iterrows()}


def design_for(
    frames: pd.DataFrame, classes: Sequence[str], cfg: EvaluateParams, seed: int
) -> BootstrapDesign:
    labels = patient_labels(frames, classes) if cfg.stratify else None
    return make_design(frames["patient_id"].astype(str).to_numpy(), cfg.bootstrap, seed, labels)


def _mean_draws(draws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return {k: np.nanmean(np.stack([d[k] for d in draws]), 0) for k in draws[0]}


def _mean_points(points: list[dict[str, float]]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([p[k] for p in points])) for k in points[0]}


@dataclass
class Scored:
    """Pooled test metrics of every available run: points, bootstrap draws, per-fold values."""

    points: dict[str, dict[str, float]]
    draws: dict[str, dict[str, np.ndarray]]
    per_fold: dict[str, dict[int, dict[str, float]]]


def score_runs(
    runs: Sequence[RunOOF],
    y: np.ndarray,
    frames: pd.DataFrame,
    design: BootstrapDesign,
    classes: list[str],
) -> Scored:
    w = design.frame_weights(frames["patient_id"].astype(str).to_numpy())
    videos = frames["video_id"].to_numpy()
    folds = frames["fold"].to_numpy()
    points, draws, per_fold = {}, {}, {}
    for r in runs:
        if not r.available:
            continue
        points[r.name] = point_metrics(y, r.test_prob, classes, videos)
        draws[r.name] = weighted_metrics(y, r.test_prob, w, classes, videos)
        per_fold[r.name] = {
            int(k): point_metrics(
                y[folds == k], r.test_prob[folds == k], classes, videos[folds == k]
            )
            for k in np.unique(folds)
        }
    return Scored(points, draws, per_fold)


def settings_of(runs: Sequence[RunOOF]) -> dict[tuple[str, str], list[RunOOF]]:
    out: dict[tuple[str, str], list[RunOOF]] = {}
    for r in runs:
        out.setdefault((r.strategy, r.arch), []).append(r)
    return out


def aggregate(
    settings: dict[tuple[str, str], list[RunOOF]], scored: Scored, ci: float
) -> dict[str, dict[str, Any]]:
    """Per setting: every metric as the mean over seeds, its interval, the seed spread and the
    per-fold values; a setting some fold skipped says why instead."""
    agg: dict[str, dict[str, Any]] = {}
    for (s, a), rs in settings.items():
        entry: dict[str, Any] = {"strategy": s, "architecture": a, "seeds": [r.seed for r in rs]}
        skipped = {f"{r.name} fold {k}": why for r in rs for k, why in r.skipped.items()}
        if skipped:
            entry["unavailable"] = skipped
            agg[f"{s}-{a}"] = entry
            continue
        pts = [scored.points[r.name] for r in rs]
        mean_pt = _mean_points(pts)
        md = _mean_draws([scored.draws[r.name] for r in rs])
        for m in mean_pt:
            entry[m] = summarise(mean_pt[m], md[m], ci)
            vals = [p[m] for p in pts]
            entry[m]["seed_sd"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else float("nan")
        folds = sorted(scored.per_fold[rs[0].name])
        entry["per_fold"] = {
            str(k): _mean_points([scored.per_fold[r.name][k] for r in rs]) for k in folds
        }
        agg[f"{s}-{a}"] = entry
    return agg


def rare_patients(
    settings: dict[tuple[str, str], list[RunOOF]],
    frames: pd.DataFrame,
    y: np.ndarray,
    classes: list[str],
    target: str,
) -> list[dict[str, Any]]:
    """Recall of each rare-class patient (its frames, pooled over folds) per setting."""
    k = classes.index(target)
    rows = []
    for pid in sorted(frames.loc[y == k, "patient_id"].astype(str).unique()):
        mask = (frames["patient_id"].astype(str).to_numpy() == pid) & (y == k)
        row: dict[str, Any] = {
            "patient_id": pid,
            "frames": int(mask.sum()),
            "fold": int(frames.loc[mask, "fold"].iloc[0]),
            "videos": int(frames.loc[mask, "video_id"].nunique()),
            "recall": {},
        }
        for (s, a), rs in settings.items():
            if all(r.available for r in rs):
                recalls = [float((r.test_prob[mask].argmax(1) == k).mean()) for r in rs]
                row["recall"][f"{s}-{a}"] = float(np.mean(recalls))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Findings:
    """What the evaluation found, as its report and figures show it."""

    agg: dict[str, dict]  # per setting: descriptive pooled metrics (or why unavailable)
    flat: dict[str, dict]  # per setting: metrics/test.json's entries (verdict intervals)
    verdicts: dict[str, Any]  # metrics/comparison.json: primary, placebo, comparisons, MDD
    rare_rows: list[dict]  # every rare-class patient's recall / AUROC / AP per setting
    classes: list[str]
    target: str  # the rare class
