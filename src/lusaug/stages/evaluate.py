"""Stage ``evaluate``: pooled out-of-fold test predictions, the verdicts, the final model's choice.

Reads every fold's test frames once (:mod:`lusaug.models.oof`) and pools every run's predictions.
The verdicts (:mod:`lusaug.models.verdicts` on :mod:`lusaug.inference`): per setting the rare
class's per-patient recall / AUROC / AP and the population metrics with intervals over patients
and seeds; per comparison (every strategy vs the baseline of its architecture, every
``synthetic-<G>`` vs its same-share control ``oversample_matched-<G>``, the pre-registered
primary) the exact patient-level sign-flip test, the interval, Holm within the family, macro-F1
non-inferiority and the verdict; the placebo; the MDD and study size from the placebo. Every
other metric keeps a descriptive patient-bootstrap interval (:mod:`lusaug.models.comparison`).

Writes ``metrics/comparison.json`` (everything), ``metrics/test.json`` (flat, per setting),
``metrics/summary.json`` (the headline ``dvc metrics show`` prints), the per-run and validation
metrics, the pooled validation metrics that choose the final model (``metrics/selection.json``:
validation only, never test), the figures and ``reports/comparison.{md,html}``, and logs the
evaluation to MLflow (a parent run with one child per setting).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.core.config import RARE_ENDPOINTS, BaseParams, EvaluateParams, TrainParams
from lusaug.core.utils import atomic_path, write_json
from lusaug.inference import POPULATION_METRICS, Comparison
from lusaug.models import comparison as cmp
from lusaug.models import verdicts as vd
from lusaug.models.comparison_report import write_comparison_report
from lusaug.models.evaluation_files import (
    RARE_PREFIX,
    comparison_document,
    flat_settings,
    headline,
    intervals_note,
    vs_baseline,
)
from lusaug.models.evaluation_plots import write_plots
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import GROUP_TAG, log_evaluation, log_to_runs
from lusaug.models.oof import HeldOutFrames, RunOOF, load_oof, predictions_table
from lusaug.models.run_files import write_csv
from lusaug.models.statistics import HEADLINE, point_metrics, summarise, weighted_metrics

logger = logging.getLogger(__name__)

# Offsets that derive the seeds of the random draws from base.seed (test and validation differ):
# the descriptive bootstrap, and the Monte Carlo sign-flip test beyond evaluate.max_sign_patterns.
TEST_SEED_OFFSET = 1001
VAL_SEED_OFFSET = 2002
KEY_CHARS = 12  # of the sha1 that keys an evaluation without training runs in MLflow


@dataclass(frozen=True)
class EvaluatePaths:
    splits: Path  # data/splits (fold-<k>.csv)
    models: Path  # models/classifiers (fold-<k>/<run>)
    metrics: Path  # metrics/test.json: pooled metrics per setting with intervals
    runs: Path  # metrics/test_runs.json: per run
    comparison: Path  # metrics/comparison.json: the verdicts and everything they rest on
    validation: Path  # metrics/validation_runs.json: pooled validation metrics per run
    selection: Path  # metrics/selection.json: the setting the final model refits
    rare: Path  # metrics/rare_patients.json: per rare-class patient and setting
    summary: Path  # metrics/summary.json: the headline (dvc metrics show)
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


def _check_primary(train: TrainParams, cfg: EvaluateParams) -> None:
    """The primary's settings must be planned (params load checks it; a stage run with hand-made
    sections is told too)."""
    p = cfg.primary
    planned = set(train.settings())
    missing = [s for s in (p.strategy, p.control) if (s, p.architecture) not in planned]
    if missing:
        raise DataError(
            f"evaluate.primary: {missing} on {p.architecture!r} are not in the training matrix "
            "(train.strategies, train.architectures, train.overrides)"
        )


def _design(info: dict[str, Any], cfg: EvaluateParams, target: str, seed: int) -> dict[str, Any]:
    return {
        "target_class": target,
        "rare_patients": info[f"{target}_patients"],
        "patients": info["patients"],
        "frames": info["frames"],
        "alpha": cfg.alpha,
        "ci": cfg.ci,
        "noninferiority_margin": cfg.noninferiority_margin,
        "max_sign_patterns": cfg.max_sign_patterns,
        "mc_draws": cfg.mc_draws,
        "mc_seed": seed,
        "bootstrap": cfg.bootstrap,
        "min_patients_for_bootstrap": cfg.min_patients_for_bootstrap,
        "interval": intervals_note(cfg)["verdict_method"],
        "descriptive_interval": intervals_note(cfg)["descriptive_method"],
        "rare_endpoints": "per rare-class patient: the share of their frames called the rare "
        "class (recall); their frames against every other-class frame (AUROC, AP); a setting's "
        "value is the mean over patients, each run's value averaged over its seeds",
    }


def _add_patient_endpoints(rows: list[dict], settings: dict[str, vd.Setting]) -> None:
    """Per rare-class patient row: the seed-averaged AUROC and AP of every setting too."""
    for key, s in settings.items():
        if s.unavailable:
            continue
        ends = s.ends
        for e in ("auroc", "ap"):
            per = dict(zip(ends.patients, ends.seed_mean(e).tolist(), strict=True))
            for row in rows:
                row.setdefault(e, {})[key] = per.get(str(row["patient_id"]))


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
    _check_primary(train, cfg)
    classes, target = base.classes, base.target_class
    seed = base.seed + TEST_SEED_OFFSET
    test = HeldOutFrames.load(paths.splits, folds, base)
    runs = load_oof(paths.models, test, folds, train, base, cfg.batch_size)
    y, frames = test.labels, test.frames
    patient_ids = frames["patient_id"].astype(str).to_numpy()
    # descriptive: every metric with a percentile patient bootstrap (never a verdict basis)
    boot = cmp.design_for(frames, classes, cfg, seed)
    scored = cmp.score_runs(runs, y, frames, boot, classes)
    groups = cmp.settings_of(runs)
    agg = cmp.aggregate(groups, scored, cfg.ci)
    # the verdicts
    primary = vd.primary_spec(cfg)
    settings = vd.build_settings(runs, y, patient_ids, classes.index(target))
    values = vd.setting_values(settings, cfg.ci)
    pairs = vd.comparison_pairs(settings, cfg.baseline, primary)
    comparisons, not_evaluated = vd.run_comparisons(settings, pairs, cfg, seed)
    family = vd.decide_all(comparisons, primary, cfg)
    placebos = vd.placebos(settings, cfg.baseline, primary.endpoint, cfg, seed)
    placebo = placebos.get(primary.architecture, {"not_run": "no baseline on that architecture"})
    limits = vd.design_limits(placebo, settings, primary, cfg)
    n_rare = int(frames.loc[y == classes.index(target), "patient_id"].nunique())
    info = {
        "frames": len(y),
        "patients": int(frames["patient_id"].nunique()),
        "videos": int(frames["video_id"].nunique()),
        "folds": len(folds),
        f"{target}_patients": n_rare,
        "bootstrap": cfg.bootstrap,
        "ci": cfg.ci,
        "stratified": cfg.stratify,
        "pooled": "every frame predicted once, by the model of the fold that tests it",
    }
    kinds = {name: pairs[name][3] for name in comparisons}
    document = clean(
        comparison_document(
            _design(info, cfg, target, seed),
            primary,
            comparisons,
            kinds,
            not_evaluated,
            family,
            placebos,
            limits,
            values,
        )
    )
    verdicts = vs_baseline(family["decisions"], comparisons, cfg.baseline)
    flat = clean(flat_settings(agg, values, verdicts))
    rare_rows = cmp.rare_patients(groups, frames, y, classes, target)
    _add_patient_endpoints(rare_rows, settings)
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
    summary = headline(
        document, flat, cfg.baseline, selection["chosen"]["setting"], vd.placebo_word(placebo)
    )
    write_json(paths.metrics, {"settings": flat, "intervals": intervals_note(cfg), "test": info})
    write_json(paths.runs, clean(per_run))
    write_json(paths.comparison, document)
    write_json(paths.summary, summary)
    write_json(paths.validation, clean(validation))
    write_json(paths.selection, clean(selection))
    write_json(paths.rare, clean({"target_class": target, "patients": rare_rows}))
    with atomic_path(paths.predictions, is_dir=True) as tmp:
        for r in runs:
            if r.available:
                write_csv(predictions_table(r, test, classes), tmp / f"{r.name}.csv")
    found = cmp.Findings(agg, flat, document, rare_rows, classes, target)
    figures = write_plots(paths.plots, runs, y, groups, found, cfg.ci)
    write_comparison_report(paths.report, info, found, selection, figures, cfg)
    out = {
        "settings": flat,
        "unavailable": {k: e["unavailable"] for k, e in agg.items() if "unavailable" in e},
        "comparison": document,
        "summary": summary,
        "selection": selection,
        "test": info,
    }
    if tracking_uri is not None:
        _log_mlflow(
            runs, scored, flat, document, comparisons, paths, figures, cfg.baseline, tracking_uri
        )
    return out


def _setting_runs(
    flat: dict[str, dict[str, Any]],
    document: dict[str, Any],
    comparisons: dict[str, Comparison],
    baseline: str,
) -> dict[str, dict[str, Any]]:
    """Per setting: its metrics with interval bounds, and the comparisons it is the strategy of
    (prefix ``vs_<control>``); the baseline's carry the placebo of its architecture."""
    out: dict[str, dict[str, Any]] = {}
    verdict_metrics = [*POPULATION_METRICS, *(RARE_PREFIX + e for e in RARE_ENDPOINTS)]
    for key, e in flat.items():
        metrics = {
            f"test.{m}{sfx}": e.get(f"{m}{sfx}")
            for m in verdict_metrics
            for sfx in ("", "_lo", "_hi")
        }
        tags = {
            "strategy": e["strategy"],
            "architecture": e["architecture"],
            "seeds": ",".join(map(str, e["seeds"])),
        }
        out[key] = {"metrics": metrics, "tags": tags}
    entries = document["comparisons"]
    for name, c in comparisons.items():
        key = vd.setting_key(c.strategy, c.architecture)
        if key not in out:
            continue
        prefix = f"vs_{c.control}"
        entry = entries[name]
        for ep, paired in entry["rare"].items():
            out[key]["metrics"] |= {
                f"{prefix}.diff.{ep}": paired["estimate"],
                f"{prefix}.diff.{ep}_lo": paired["interval"]["lo"],
                f"{prefix}.diff.{ep}_hi": paired["interval"]["hi"],
                f"{prefix}.p_exact.{ep}": paired["test"]["p_value"],
                f"{prefix}.p_holm.{ep}": entry["p_holm"][ep],
            }
        f1 = entry["population"]["f1_macro"]
        out[key]["metrics"] |= {
            f"{prefix}.diff.f1_macro": f1["estimate"],
            f"{prefix}.diff.f1_macro_lo": f1["interval"]["lo"],
            f"{prefix}.diff.f1_macro_hi": f1["interval"]["hi"],
        }
        out[key]["tags"][f"verdict.{prefix}"] = entry["decision"]["verdict"]
    for arch, placebo in document["placebos"].items():
        key = vd.setting_key(baseline, arch)
        if key in out and "decision" in placebo:
            d = placebo["decision"]
            out[key]["metrics"] |= {
                "placebo.diff": d["estimate"],
                "placebo.diff_lo": d["lo"],
                "placebo.diff_hi": d["hi"],
                "placebo.p_exact": d["p_value"],
            }
            out[key]["tags"]["placebo"] = placebo["verdict"]
    return out


def _log_mlflow(
    runs: list[RunOOF],
    scored: cmp.Scored,
    flat: dict[str, dict[str, Any]],
    document: dict[str, Any],
    comparisons: dict[str, Comparison],
    paths: EvaluatePaths,
    figures: dict[str, Path],
    baseline: str,
    tracking_uri: str,
) -> None:
    """Test metrics back to every training run; the evaluation parent with a child per setting."""
    import mlflow
    from mlflow.tracking import MlflowClient

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
    client = MlflowClient()
    keys = sorted({client.get_run(p).data.tags.get(GROUP_TAG, "") for p in parents} - {""})
    blob = json.dumps(flat, sort_keys=True).encode()
    key = keys[0] if keys else hashlib.sha1(blob).hexdigest()[:KEY_CHARS]
    primary = document["primary"]
    d = primary["decision"] or {}
    parent = {
        "metrics": {
            "primary.diff": d.get("estimate"),
            "primary.diff_lo": d.get("lo"),
            "primary.diff_hi": d.get("hi"),
            "primary.p_exact": d.get("p_value"),
        },
        "tags": {
            "primary": primary["name"],
            "primary.endpoint": primary["endpoint"],
            "primary.verdict": d.get("verdict", vd.NOT_EVALUATED),
            "placebo": (document["placebo"] or {}).get("verdict", vd.PLACEBO_NOT_RUN),
            "lusaug.train_parents": ",".join(sorted(parents)),
        },
    }
    files = [
        paths.report,
        paths.report.with_suffix(".html"),
        paths.metrics,
        paths.comparison,
        paths.summary,
        *figures.values(),
    ]
    settings = _setting_runs(flat, document, comparisons, baseline)
    log_evaluation(tracking_uri, key, settings, parent, files)
