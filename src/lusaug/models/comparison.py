"""Pooled out-of-fold metrics with patient-bootstrap intervals, paired differences, a decision.

Every setting (strategy x architecture) is the mean over its seeds of metrics computed on the
pooled out-of-fold predictions (every frame predicted once, by its test fold's model). Intervals
come from a cluster bootstrap over **all** patients, stratified by class by default so that every
draw holds every class (an unstratified draw can lack the single test patient of a rare class and
then averages macro metrics over fewer classes). Each strategy is compared with the baseline of
the same architecture over the same seeds and the same draws (paired differences).

The decision rule: a strategy **helps the rare class** when the lower bound of its paired
rare-class-recall difference is above 0 and its macro-F1 difference is not significantly negative
(the upper bound is not below 0). With fewer than two rare-class patients the verdict is "not
estimable". The minimum detectable difference of a comparison is (z_{1-a/2} + z_power) times the
bootstrap standard deviation of its paired difference: differences smaller than that are what
this many patients cannot tell from noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from lusaug.core.config import EvaluateParams
from lusaug.models.oof import RunOOF
from lusaug.models.statistics import (
    HEADLINE,
    BootstrapDesign,
    make_design,
    point_metrics,
    significance,
    summarise,
    weighted_metrics,
)

MIN_PATIENTS_FOR_INTERVAL = 2  # one patient: every draw holds the same outcome
HELPS, NO_HELP, NOT_ESTIMABLE = "helps", "does not help", "not estimable"


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


def mdd(draws: np.ndarray, ci: float, power: float) -> float:
    """Minimum detectable difference from the bootstrap spread of a paired difference."""
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return float("nan")
    z = norm.ppf(1.0 - (1.0 - ci) / 2.0) + norm.ppf(power)
    return float(z * finite.std(ddof=1))


def decide(rare: dict[str, Any], f1: dict[str, Any], n_rare_patients: int) -> tuple[str, str]:
    """(verdict, why) of the decision rule for one strategy x architecture."""
    if n_rare_patients < MIN_PATIENTS_FOR_INTERVAL:
        return NOT_ESTIMABLE, f"{n_rare_patients} rare-class patient(s): no interval"
    lo, f1_hi = rare["lo"], f1["hi"]
    if not (math.isfinite(lo) and math.isfinite(f1_hi)):
        return NOT_ESTIMABLE, "the interval is undefined"
    if lo > 0 and f1_hi >= 0:
        return HELPS, "rare-class recall better beyond its interval, macro-F1 not worse"
    if lo > 0:
        return NO_HELP, "rare-class recall better, but macro-F1 significantly worse"
    return NO_HELP, "rare-class recall difference's interval reaches 0 or below"


def compare(
    settings: dict[tuple[str, str], list[RunOOF]],
    scored: Scored,
    cfg: EvaluateParams,
    target: str,
    n_rare_patients: int,
) -> dict[str, dict[str, Any]]:
    """Paired differences with the baseline (same architecture, seeds and draws), the decision
    and the minimum detectable difference of each metric."""
    out: dict[str, dict[str, Any]] = {}
    metrics = [*HEADLINE, f"recall_{target}"]
    for (s, a), rs in settings.items():
        base = settings.get((cfg.baseline, a))
        if s == cfg.baseline or base is None or any(not r.available for r in [*rs, *base]):
            continue
        seeds = sorted({r.seed for r in rs} & {r.seed for r in base})
        mine = [r for r in rs if r.seed in seeds]
        theirs = [r for r in base if r.seed in seeds]
        d_mine = _mean_draws([scored.draws[r.name] for r in mine])
        d_base = _mean_draws([scored.draws[r.name] for r in theirs])
        p_mine = _mean_points([scored.points[r.name] for r in mine])
        p_base = _mean_points([scored.points[r.name] for r in theirs])
        by_seed = {r.seed: scored.points[r.name] for r in mine}
        base_by_seed = {r.seed: scored.points[r.name] for r in theirs}
        entry: dict[str, Any] = {
            "strategy": s,
            "architecture": a,
            "baseline": cfg.baseline,
            "seeds": seeds,
        }
        for m in metrics:
            diff_draws = d_mine[m] - d_base[m]
            sm = summarise(p_mine[m] - p_base[m], diff_draws, cfg.ci)
            entry[m] = {
                "diff": sm["value"],
                "lo": sm["lo"],
                "hi": sm["hi"],
                "verdict": significance(sm["lo"], sm["hi"]),
                "mdd": mdd(diff_draws, cfg.ci, cfg.power),
                "per_seed": [by_seed[sd][m] - base_by_seed[sd][m] for sd in seeds],
            }
        rare = entry[f"recall_{target}"]
        if n_rare_patients < MIN_PATIENTS_FOR_INTERVAL:
            rare["verdict"] = f"{NOT_ESTIMABLE} ({n_rare_patients} {target} patient(s))"
        entry["decision"], entry["decision_reason"] = decide(
            rare, entry["f1_macro"], n_rare_patients
        )
        out[f"{s}-{a}"] = entry
    return out


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
    """What the pooled comparison found, as its report and figures show it."""

    agg: dict[str, dict]  # per setting: pooled metrics with intervals (or why unavailable)
    comparison: dict[str, dict]  # per setting: paired differences with the baseline, decision
    rare_rows: list[dict]  # recall of every rare-class patient per setting
    classes: list[str]
    target: str  # the rare class


def patients_needed(n_patients: int, detectable: float, gain: float) -> int | None:
    """Patients a study like this one would need for ``gain`` to be detectable (MDD ~ 1/sqrt(n))."""
    if not (math.isfinite(detectable) and detectable > 0):
        return None
    return math.ceil(n_patients * (detectable / gain) ** 2)
