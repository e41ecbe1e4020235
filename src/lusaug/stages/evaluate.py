"""Stage ``evaluate``: pooled out-of-fold test metrics, paired differences, the decision.

Reads every fold's test frames once (:mod:`lusaug.models.oof`), scores the pooled predictions of
every run with patient-bootstrap intervals (:mod:`lusaug.models.comparison`), writes the metrics
files, the figures, ``reports/comparison.{md,html}`` and the pooled validation metrics that
choose the final model (``metrics/selection.json``: validation only, never test), and logs the
results to MLflow.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lusaug.core.config import BaseParams, EvaluateParams, TrainParams
from lusaug.core.utils import atomic_path, write_json
from lusaug.models import comparison as cmp
from lusaug.models.comparison_report import write_comparison_report
from lusaug.models.evaluation_plots import write_plots
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import log_to_runs
from lusaug.models.oof import HeldOutFrames, RunOOF, load_oof, predictions_table
from lusaug.models.run_files import write_csv
from lusaug.models.statistics import HEADLINE, point_metrics, summarise, weighted_metrics

logger = logging.getLogger(__name__)

# Offsets that derive the bootstrap seeds from base.seed (test and validation draws differ).
TEST_SEED_OFFSET = 1001
VAL_SEED_OFFSET = 2002
# The per-setting metrics in metrics/test.json (dvc metrics show/diff), with recall of the target.
DVC_METRICS = ("accuracy", "f1_macro", "precision_macro", "balanced_accuracy", "video_accuracy")


@dataclass(frozen=True)
class EvaluatePaths:
    splits: Path  # data/splits (fold-<k>.csv)
    models: Path  # models/classifiers (fold-<k>/<run>)
    metrics: Path  # metrics/test.json: pooled metrics per setting (dvc metrics)
    runs: Path  # metrics/test_runs.json: per run
    comparison: Path  # metrics/comparison.json: paired differences, decisions, MDD
    validation: Path  # metrics/validation_runs.json: pooled validation metrics per run
    selection: Path  # metrics/selection.json: the setting the final model refits
    rare: Path  # metrics/rare_patients.json: recall per rare-class patient
    predictions: Path  # reports/predictions/<run>.csv: pooled out-of-fold predictions
    plots: Path  # plots/evaluate: confusion/ and curves/ CSVs, figures/ PNGs
    report: Path  # reports/comparison.md (+ .html)


def clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, rounded for readable diffs."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _validation(
    runs: list[RunOOF], classes: list[str], cfg: EvaluateParams, seed: int, metric: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pooled validation metrics per run (every fold's val predictions) and the selection."""
    index = {c: i for i, c in enumerate(classes)}
    per_run: dict[str, Any] = {}
    by_setting: dict[str, list[float]] = {}
    for r in runs:
        if not r.available:
            continue
        val = r.val
        y = val["label"].map(index).to_numpy()
        prob = val[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
        videos = val["video_id"].to_numpy()
        design = cmp.design_for(val, classes, cfg, seed)
        w = design.frame_weights(val["patient_id"].astype(str).to_numpy())
        pt = point_metrics(y, prob, classes, videos)
        dr = weighted_metrics(y, prob, w, classes, videos)
        entry = {"strategy": r.strategy, "architecture": r.arch, "seed": r.seed}
        for m in [*HEADLINE, *(f"recall_{c}" for c in classes)]:
            s = summarise(pt[m], dr[m], cfg.ci)
            entry[f"val_{m}"], entry[f"val_{m}_lo"], entry[f"val_{m}_hi"] = (
                s["value"],
                s["lo"],
                s["hi"],
            )
        per_run[r.name] = entry
        by_setting.setdefault(f"{r.strategy}-{r.arch}", []).append(entry[metric])
    if not by_setting:
        raise DataError("no setting is available on every fold: nothing to select")
    means = {k: float(np.mean(v)) for k, v in by_setting.items()}
    best = max(sorted(means), key=lambda k: means[k])
    strategy, arch = best.rsplit("-", 1)
    selection = {
        "metric": metric,
        "chosen": {"setting": best, "strategy": strategy, "architecture": arch},
        "value": means[best],
        "settings": dict(sorted(means.items(), key=lambda kv: -kv[1])),
        "note": "pooled validation predictions of every fold, mean over seeds; test not read",
    }
    return per_run, selection


def _dvc_metrics(agg: dict, comparison: dict, target: str, info: dict) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for name, e in agg.items():
        if "unavailable" in e:
            continue
        flat: dict[str, Any] = {}
        for m in (*DVC_METRICS, f"recall_{target}"):
            flat[m], flat[f"{m}_lo"], flat[f"{m}_hi"] = e[m]["value"], e[m]["lo"], e[m]["hi"]
        if name in comparison:
            c = comparison[name]
            for m in ("accuracy", "f1_macro", f"recall_{target}"):
                flat[f"diff_{m}"], flat[f"diff_{m}_lo"], flat[f"diff_{m}_hi"] = (
                    c[m]["diff"],
                    c[m]["lo"],
                    c[m]["hi"],
                )
            flat["decision"] = c["decision"]
        out[name] = flat
    return {"settings": out, "test": info}


def run(
    paths: EvaluatePaths,
    base: BaseParams,
    train: TrainParams,
    cfg: EvaluateParams,
    *,
    folds: list[int],
    select_metric: str,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Everything the ``evaluate`` stage writes; returns the summary.

    Args:
        paths: The fold files and run folders it reads, the files it writes.
        base: The base section (classes, target class, seed).
        train: The train section (the planned runs).
        cfg: The evaluate section.
        folds: split.folds.
        select_metric: final.metric: the pooled validation metric that chooses the final model.
        tracking_uri: Log to MLflow (None = off).
    """
    classes, target = base.classes, base.target_class
    test = HeldOutFrames.load(paths.splits, folds, base)
    runs = load_oof(paths.models, test, folds, train, base, cfg.batch_size)
    y, frames = test.labels, test.frames
    design = cmp.design_for(frames, classes, cfg, base.seed + TEST_SEED_OFFSET)
    scored = cmp.score_runs(runs, y, frames, design, classes)
    settings = cmp.settings_of(runs)
    agg = cmp.aggregate(settings, scored, cfg.ci)
    n_rare = int(frames.loc[y == classes.index(target), "patient_id"].nunique())
    comparison = cmp.compare(settings, scored, cfg, target, n_rare)
    rare_rows = cmp.rare_patients(settings, frames, y, classes, target)
    per_run = {
        r.name: {"strategy": r.strategy, "architecture": r.arch, "seed": r.seed}
        | {
            m: summarise(scored.points[r.name][m], scored.draws[r.name][m], cfg.ci)
            for m in HEADLINE
        }
        | {"per_fold": scored.per_fold[r.name]}
        for r in runs
        if r.available
    }
    validation, selection = _validation(
        runs, classes, cfg, base.seed + VAL_SEED_OFFSET, select_metric
    )
    mdd = _mdd_summary(comparison, target, design, frames, y, classes, cfg)
    info = {
        "frames": len(y),
        "patients": len(design.patients),
        "videos": int(frames["video_id"].nunique()),
        "folds": len(folds),
        f"{target}_patients": n_rare,
        "bootstrap": cfg.bootstrap,
        "ci": cfg.ci,
        "stratified": cfg.stratify,
        "pooled": "every frame predicted once, by the model of the fold that tests it",
    }
    write_json(paths.metrics, clean(_dvc_metrics(agg, comparison, target, info)))
    write_json(paths.runs, clean(per_run))
    write_json(paths.comparison, clean({"comparisons": comparison, "mdd": mdd}))
    write_json(paths.validation, clean(validation))
    write_json(paths.selection, clean(selection))
    write_json(paths.rare, clean({"target_class": target, "patients": rare_rows}))
    with atomic_path(paths.predictions, is_dir=True) as tmp:
        for r in runs:
            if r.available:
                write_csv(predictions_table(r, test, classes), tmp / f"{r.name}.csv")
    found = cmp.Findings(agg, comparison, rare_rows, classes, target)
    figures = write_plots(paths.plots, runs, y, settings, found, cfg.ci)
    write_comparison_report(paths.report, info, found, mdd, selection, figures, cfg)
    summary = {"settings": agg, "comparison": comparison, "selection": selection, "test": info}
    if tracking_uri is not None:
        _log_mlflow(runs, scored, agg, comparison, paths, figures, target, tracking_uri)
    return summary


def _mdd_summary(
    comparison: dict,
    target: str,
    design: Any,
    frames: pd.DataFrame,
    y: np.ndarray,
    classes: list[str],
    cfg: EvaluateParams,
) -> dict[str, Any]:
    """Median minimum detectable difference per metric, and the study size for a known gain."""
    out: dict[str, Any] = {"power": cfg.power, "ci": cfg.ci}
    for m in ("accuracy", "f1_macro", f"recall_{target}"):
        # a zero spread means both strategies gave the same outcome in every draw (e.g. neither
        # ever predicts the class): it says nothing about what the design could detect
        vals = [
            c[m]["mdd"]
            for c in comparison.values()
            if np.isfinite(c[m]["mdd"]) and c[m]["mdd"] > 0
        ]
        out[m] = float(np.median(vals)) if vals else float("nan")
    n_patients = len(design.patients)
    n_rare = int(frames.loc[y == classes.index(target), "patient_id"].nunique())
    needed = cmp.patients_needed(n_patients, out["accuracy"], cfg.reference_gain)
    out["reference_gain"] = cfg.reference_gain
    out["patients"] = n_patients
    out[f"{target}_patients"] = n_rare
    out["patients_needed_for_reference_gain"] = needed
    out[f"{target}_patients_needed_for_reference_gain"] = (
        None if needed is None else math.ceil(needed * n_rare / n_patients)
    )
    return out


def _log_mlflow(
    runs: list[RunOOF],
    scored: cmp.Scored,
    agg: dict,
    comparison: dict,
    paths: EvaluatePaths,
    figures: dict[str, Path],
    target: str,
    tracking_uri: str,
) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    parents = set()
    for r in runs:
        for k, info in r.info.items():
            if info.get("mlflow_run_id") and r.available:
                fold_metrics = scored.per_fold[r.name].get(k, {})
                vals = {f"test_fold_{m}": v for m, v in fold_metrics.items()}
                vals |= {f"test_pooled_{m}": scored.points[r.name][m] for m in HEADLINE}
                log_to_runs([info["mlflow_run_id"]], vals, [])
            if info.get("mlflow_parent_run_id"):
                parents.add(info["mlflow_parent_run_id"])
    if not parents:
        return
    metrics: dict[str, float] = {}
    for name, e in agg.items():
        if "unavailable" in e:
            continue
        for m in (*HEADLINE, f"recall_{target}"):
            for kk in ("value", "lo", "hi"):
                suffix = "" if kk == "value" else f"_{kk}"
                metrics[f"test.{name}.{m}{suffix}"] = e[m][kk]
    for name, e in comparison.items():
        for m in ("accuracy", "f1_macro", f"recall_{target}"):
            metrics[f"diff.{name}.{m}"] = e[m]["diff"]
    files = [paths.report, paths.report.with_suffix(".html"), paths.metrics, paths.comparison]
    log_to_runs(sorted(parents), metrics, [*files, *figures.values()])
