"""Evaluate every planned classifier run on the test split, read once, with honest intervals.

For each run (strategy x architecture x seed) and for each setting (strategy x architecture,
averaged over seeds) this computes the report's metrics with scikit-learn, 95% intervals from a
cluster bootstrap over **patients**, and, for every strategy, the paired difference with the
baseline of the same architecture over the same seeds and the same bootstrap draws. A difference
whose interval spans 0 is reported as not significant.

Validation metrics (with their own patient-bootstrap intervals) are written separately to
``validation_runs.json``: choosing a winner (the ``register`` stage) must use those, never the
test numbers.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lusaug.config import SYNTHETIC_PREFIX, Params
from lusaug.models.data import DataError, FrameSet
from lusaug.models.metrics import (
    HEADLINE,
    BootstrapDesign,
    make_design,
    point_metrics,
    significance,
    summarise,
    weighted_metrics,
)
from lusaug.models.train import FILES
from lusaug.utils import atomic_path, write_json

logger = logging.getLogger(__name__)

# Columns of the study's Table 3 (per architecture), in order.
TABLE3 = (("accuracy", "Acc"), ("f1_macro", "F1"), ("precision_macro", "Prec"))
# The per-setting metrics in metrics/test.json (dvc metrics show/diff), with recall of the target.
DVC_METRICS = ("accuracy", "f1_macro", "precision_macro", "balanced_accuracy", "video_accuracy")
# Offsets that derive the bootstrap seeds from base.seed (test and validation draws differ).
TEST_SEED_OFFSET = 1001
VAL_SEED_OFFSET = 2002
# Bootstrap intervals over fewer test patients than this are degenerate (one patient: lo == hi).
MIN_PATIENTS_FOR_INTERVAL = 2


@dataclass
class RunRecord:
    """One finished run: its test probabilities and what training left in its folder."""

    name: str
    strategy: str
    arch: str
    seed: int
    test_prob: np.ndarray  # (N_test, K)
    val: pd.DataFrame  # val_predictions.csv
    history: pd.DataFrame  # history.csv
    info: dict[str, Any] = field(default_factory=dict)  # run.json
    checkpoint: str = ""  # path of model.pt as given on argv (repo-relative in DVC)


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: Path  # aggregated test metrics per setting (dvc metrics)
    runs: Path  # per-run test metrics
    comparison: Path  # paired differences vs the baseline
    validation: Path  # per-run validation metrics for `register`
    plots: Path  # confusion/ and curves/ CSVs, figures/ PNGs
    report: Path  # comparison.md (+ .html beside it)


def planned_runs(params: Params) -> list[tuple[str, str, int]]:
    """(strategy, architecture, seed) of every run the train stages produce, in report order."""
    t = params.train
    strategies = [
        *t.strategies,
        *t.tuned_strategies,
        *(SYNTHETIC_PREFIX + g for g in t.generators),
    ]
    return [(s, a, seed) for s in strategies for a in t.architectures for seed in t.seeds]


def load_runs(params: Params, models_dir: Path | str, test: FrameSet) -> list[RunRecord]:
    """Load every planned run's best checkpoint and predict the test frames."""
    import torch
    from tqdm.auto import tqdm

    from lusaug.models.classifier import load_classifier
    from lusaug.models.data import predict_proba

    if params.evaluate.threads > 0:
        torch.set_num_threads(params.evaluate.threads)
    models_dir = Path(models_dir)
    records = []
    for strategy, arch, seed in tqdm(planned_runs(params), desc="evaluate: test predictions"):
        name = f"{strategy}-{arch}-{seed}"
        run_dir = models_dir / name
        missing = [
            f
            for f in ("checkpoint", "run", "val_predictions", "history")
            if not (run_dir / FILES[f]).exists()
        ]
        if missing:
            raise DataError(
                f"run {name} is missing {[FILES[f] for f in missing]} in {run_dir}: "
                f"it did not finish; run `dvc repro` (stage train*@{name})"
            )
        model, meta = load_classifier(run_dir / FILES["checkpoint"])
        if meta.classes != params.base.classes or meta.image_size != params.base.image_size:
            raise DataError(
                f"{run_dir / FILES['checkpoint']} was trained for classes {meta.classes} at "
                f"{meta.image_size} px, params say {params.base.classes} at "
                f"{params.base.image_size} px: retrain it (`dvc repro`)"
            )
        prob = predict_proba(model, test.images, meta.mean, meta.std, params.evaluate.batch_size)
        records.append(
            RunRecord(
                name=name,
                strategy=strategy,
                arch=arch,
                seed=seed,
                test_prob=prob,
                val=pd.read_csv(
                    run_dir / FILES["val_predictions"],
                    keep_default_na=False,
                    dtype={"video_id": str, "patient_id": str},
                ),
                history=pd.read_csv(run_dir / FILES["history"]),
                info=json.loads((run_dir / FILES["run"]).read_text()),
                checkpoint=(run_dir / FILES["checkpoint"]).as_posix(),
            )
        )
    return records


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, rounded for readable diffs."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _fmt(v: float, lo: float | None = None, hi: float | None = None, pct: bool = True) -> str:
    def one(x: float) -> str:
        if x is None or not np.isfinite(x):
            return "n/a"
        return f"{100 * x:.1f}" if pct else f"{x:.3f}"

    if lo is None:
        return one(v)
    return f"{one(v)} [{one(lo)}, {one(hi)}]"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _design(
    frames: pd.DataFrame, classes: list[str], n: int, seed: int, stratify: bool
) -> BootstrapDesign:
    labels = None
    if stratify:
        first = frames.groupby("patient_id")["label"].agg(lambda s: s.mode().iloc[0])
        labels = {p: classes.index(c) for p, c in first.items()}
    return make_design(frames["patient_id"].to_numpy(), n, seed, labels)


def _mean_draws(draws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return {k: np.nanmean(np.stack([d[k] for d in draws]), 0) for k in draws[0]}


def _mean_points(points: list[dict[str, float]]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([p[k] for p in points])) for k in points[0]}


def evaluate_records(
    params: Params,
    test: FrameSet,
    runs: list[RunRecord],
    out: EvaluateOutputs,
    tracking: bool = True,
    root: Path | str = ".",
) -> dict[str, Any]:
    """Metrics, intervals, paired comparisons, plots, report and MLflow logging for ``runs``.

    Args:
        params: typed config (``evaluate`` and ``base`` are read).
        test: the test split (only labels and frame metadata are used here).
        runs: finished runs with their test probabilities.
        out: where to write.
        tracking: log test metrics to each run and the aggregate to its MLflow parent run.
        root: repository root (default MLflow store).
    """
    from sklearn.metrics import confusion_matrix

    if not runs:
        raise DataError(
            "no classifier runs to evaluate: check train.strategies/seeds/architectures"
        )
    ev, classes = params.evaluate, params.base.classes
    k = len(classes)
    target = params.base.target_class
    y = test.labels.numpy()
    videos = test.frames["video_id"].to_numpy()
    test_design = _design(
        test.frames, classes, ev.bootstrap, params.base.seed + TEST_SEED_OFFSET, ev.stratify
    )
    w_test = test_design.frame_weights(test.frames["patient_id"].to_numpy())
    # A per-class metric resampled over a single test patient has a degenerate interval: with
    # fewer than two patients of the class its difference is reported as not estimable.
    test_patients = test.frames.groupby("label")["patient_id"].nunique().to_dict()
    val_frames = runs[0].val
    val_design = _design(
        val_frames, classes, ev.bootstrap, params.base.seed + VAL_SEED_OFFSET, ev.stratify
    )

    # ---- per run ----
    per_run: dict[str, dict[str, Any]] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    points: dict[str, dict[str, float]] = {}
    validation: dict[str, dict[str, Any]] = {}
    cms: dict[str, np.ndarray] = {}
    for r in runs:
        pt = point_metrics(y, r.test_prob, classes, videos)
        dr = weighted_metrics(y, r.test_prob, w_test, classes, videos)
        points[r.name], draws[r.name] = pt, dr
        per_run[r.name] = {
            "strategy": r.strategy,
            "architecture": r.arch,
            "seed": r.seed,
            **{m: summarise(pt[m], dr[m], ev.ci) for m in pt},
        }
        cms[r.name] = confusion_matrix(y, r.test_prob.argmax(1), labels=list(range(k)))
        validation[r.name] = _validation_entry(r, classes, val_design, ev.ci)

    # ---- per setting (strategy x architecture), averaged over seeds ----
    settings: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        settings.setdefault((r.strategy, r.arch), []).append(r)
    agg: dict[str, dict[str, Any]] = {}
    for (s, a), rs in settings.items():
        pts = [points[r.name] for r in rs]
        mean_pt = _mean_points(pts)
        md = _mean_draws([draws[r.name] for r in rs])
        entry: dict[str, Any] = {"strategy": s, "architecture": a, "seeds": [r.seed for r in rs]}
        for m in mean_pt:
            entry[m] = summarise(mean_pt[m], md[m], ev.ci)
            vals = [p[m] for p in pts]
            entry[m]["seed_sd"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else float("nan")
        agg[f"{s}-{a}"] = entry

    # ---- paired differences with the baseline ----
    comparison: dict[str, dict[str, Any]] = {}
    compare_metrics = [*HEADLINE, f"recall_{target}"]
    for (s, a), rs in settings.items():
        base = settings.get((ev.baseline, a))
        if s == ev.baseline or base is None:
            continue
        seeds = sorted({r.seed for r in rs} & {r.seed for r in base})
        if not seeds:
            continue
        mine = [r for r in rs if r.seed in seeds]
        theirs = [r for r in base if r.seed in seeds]
        d_mine = _mean_draws([draws[r.name] for r in mine])
        d_base = _mean_draws([draws[r.name] for r in theirs])
        p_mine = _mean_points([points[r.name] for r in mine])
        p_base = _mean_points([points[r.name] for r in theirs])
        entry = {"strategy": s, "architecture": a, "baseline": ev.baseline, "seeds": seeds}
        # the interval is over test patients; training-seed spread is shown beside it
        by_seed = {r.seed: points[r.name] for r in mine}
        base_by_seed = {r.seed: points[r.name] for r in theirs}
        entry["seed_diffs_f1_macro"] = [
            by_seed[sd]["f1_macro"] - base_by_seed[sd]["f1_macro"] for sd in seeds
        ]
        for m in compare_metrics:
            sm = summarise(p_mine[m] - p_base[m], d_mine[m] - d_base[m], ev.ci)
            entry[m] = {
                "diff": sm["value"],
                "lo": sm["lo"],
                "hi": sm["hi"],
                "verdict": significance(sm["lo"], sm["hi"]),
            }
            # per-class recall only: recall_macro is an average over classes, not a class
            cls = m.removeprefix("recall_") if m.startswith("recall_") else None
            cls = cls if cls in classes else None
            n_patients = int(test_patients.get(cls, 0)) if cls else None
            if n_patients is not None and n_patients < MIN_PATIENTS_FOR_INTERVAL:
                entry[m]["verdict"] = f"not estimable ({n_patients} test patient(s) of {cls})"
        comparison[f"{s}-{a}"] = entry

    # ---- files ----
    # dvc metrics: a compact view per setting (value, interval) plus the paired differences
    metrics_json: dict[str, dict[str, float]] = {}
    for name, e in agg.items():
        flat: dict[str, float] = {}
        for m in DVC_METRICS + (f"recall_{target}",):
            flat[m], flat[f"{m}_lo"], flat[f"{m}_hi"] = e[m]["value"], e[m]["lo"], e[m]["hi"]
        for m in ("accuracy", "f1_macro", f"recall_{target}"):
            if name in comparison:
                c = comparison[name][m]
                flat[f"diff_{m}"], flat[f"diff_{m}_lo"], flat[f"diff_{m}_hi"] = (
                    c["diff"],
                    c["lo"],
                    c["hi"],
                )
        metrics_json[name] = flat
    info = {
        "test_frames": len(y),
        "test_patients": len(test_design.patients),
        "test_videos": len(set(videos)),
        "bootstrap": ev.bootstrap,
        "ci": ev.ci,
        "stratified": ev.stratify,
    }
    write_json(out.metrics, _clean({"settings": metrics_json, "test_split": info}))
    write_json(out.runs, _clean(per_run))
    write_json(out.comparison, _clean(comparison))
    write_json(out.validation, _clean(validation))
    figures = _write_plots(out.plots, runs, cms, settings, agg, comparison, classes, target, ev.ci)
    _write_report(out.report, params, test, info, agg, comparison, settings, figures)
    summary = {"settings": agg, "comparison": comparison, "runs": per_run, "test_split": info}
    if tracking:
        _log_mlflow(params, runs, per_run, agg, comparison, out, figures, root)
    return summary


def _validation_entry(
    r: RunRecord, classes: list[str], design: BootstrapDesign, ci: float
) -> dict:
    val = r.val
    index = {c: i for i, c in enumerate(classes)}
    yv = val["label"].map(index).to_numpy()
    prob = val[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    vv = val["video_id"].to_numpy()
    pt = point_metrics(yv, prob, classes, vv)
    dr = weighted_metrics(
        yv, prob, design.frame_weights(val["patient_id"].to_numpy()), classes, vv
    )
    entry: dict[str, Any] = {
        "strategy": r.strategy,
        "architecture": r.arch,
        "seed": r.seed,
        "checkpoint": r.checkpoint,
        "mlflow_run_id": r.info.get("mlflow_run_id"),
        "mlflow_parent_run_id": r.info.get("mlflow_parent_run_id"),
        "best_epoch": r.info.get("best_epoch"),
        "model": r.info.get("model"),
    }
    for m in [*HEADLINE, *(f"recall_{c}" for c in classes), *(f"f1_{c}" for c in classes)]:
        s = summarise(pt[m], dr[m], ci)
        entry[f"val_{m}"], entry[f"val_{m}_lo"], entry[f"val_{m}_hi"] = (
            s["value"],
            s["lo"],
            s["hi"],
        )
    entry["val_macro_f1"] = entry["val_f1_macro"]  # the name register/tune use
    entry["val_macro_f1_lo"], entry["val_macro_f1_hi"] = (
        entry["val_f1_macro_lo"],
        entry["val_f1_macro_hi"],
    )
    return entry


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _write_plots(
    plots_dir: Path,
    runs: list[RunRecord],
    cms: dict[str, np.ndarray],
    settings: dict[tuple[str, str], list[RunRecord]],
    agg: dict[str, dict],
    comparison: dict,
    classes: list[str],
    target: str,
    ci: float,
) -> dict[str, Path]:
    """CSV sources for DVC plots and PNG figures (offline-friendly image plots)."""
    from lusaug.models import plots

    plots_dir = Path(plots_dir)
    for sub in ("confusion", "curves", "figures"):
        folder = plots_dir / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():  # runs no longer planned must not linger in the plots
            if old.is_file():
                old.unlink()
    figs = plots_dir / "figures"
    out: dict[str, Path] = {}
    for r in runs:
        cm = cms[r.name]
        pairs = [
            (classes[i], classes[j])
            for i in range(len(classes))
            for j in range(len(classes))
            for _ in range(int(cm[i, j]))
        ]
        _write_csv(
            pd.DataFrame(pairs, columns=["actual", "predicted"]),
            plots_dir / "confusion" / f"{r.name}.csv",
        )
        cols = [
            c
            for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1")
            if c in r.history
        ]
        _write_csv(r.history[cols], plots_dir / "curves" / f"{r.name}.csv")
        plots.save(
            plots.confusion_figure(cm, classes, f"{r.name} (test)"),
            figs / f"confusion_{r.name}.png",
        )
    grid = {f"{s} / {a}": sum(cms[r.name] for r in rs) for (s, a), rs in settings.items()}
    out["confusion_grid"] = plots.save(
        plots.confusion_grid(grid, classes), figs / "confusion_grid.png"
    )
    rows = [
        {
            "setting": f"{e['strategy']} / {e['architecture']}",
            "class": c,
            "value": e[f"recall_{c}"]["value"],
            "lo": e[f"recall_{c}"]["lo"],
            "hi": e[f"recall_{c}"]["hi"],
        }
        for e in agg.values()
        for c in classes
    ]
    out["recall_bars"] = plots.save(
        plots.recall_bars(pd.DataFrame(rows), classes, ci), figs / "recall_bars.png"
    )
    histories = {r.name: r.history for r in runs}
    out["curves_f1"] = plots.save(
        plots.curves_figure(histories, "val_macro_f1", "validation macro-F1"),
        figs / "curves_val_macro_f1.png",
    )
    out["curves_loss"] = plots.save(
        plots.curves_figure(histories, "train_loss", "training loss"),
        figs / "curves_train_loss.png",
    )
    if comparison:
        for metric in ("f1_macro", f"recall_{target}"):
            table = pd.DataFrame(
                [
                    {
                        "setting": f"{e['strategy']} / {e['architecture']}",
                        "diff": e[metric]["diff"],
                        "lo": e[metric]["lo"],
                        "hi": e[metric]["hi"],
                    }
                    for e in comparison.values()
                ]
            )
            out[f"diff_{metric}"] = plots.save(
                plots.difference_figure(table, metric, ci), figs / f"differences_{metric}.png"
            )
    return out


def _write_report(
    path: Path,
    params: Params,
    test: FrameSet,
    info: dict,
    agg: dict,
    comparison: dict,
    settings: dict,
    figures: dict[str, Path],
) -> None:
    from lusaug.models.report import Doc, write_report

    classes, ev = params.base.classes, params.evaluate
    target = params.base.target_class
    archs = list(dict.fromkeys(a for _, a in settings))
    strategies = list(dict.fromkeys(s for s, _ in settings))
    per_class = test.frames.groupby("label")["patient_id"].nunique().reindex(classes).fillna(0)
    frames_per_class = test.frames["label"].value_counts().reindex(classes).fillna(0)
    pct = round(100 * ev.ci)
    seeds = params.train.seeds
    doc = Doc()
    doc.h(1, "Classifier comparison on the test split")
    doc.p(
        f"Test split (read once, by the evaluate stage): {info['test_frames']} frames, "
        f"{info['test_videos']} videos, {info['test_patients']} patients. Per class "
        + ", ".join(
            f"{c}: {int(frames_per_class[c])} frames / {_n(int(per_class[c]), 'patient')}"
            for c in classes
        )
        + f". Every setting is the mean over seeds {seeds}; brackets are {pct}% intervals from "
        f"{ev.bootstrap} bootstrap resamples of test patients"
        f"{' within each class' if ev.stratify else ''} (frames of a patient are not independent)."
    )
    n_target = int(per_class.get(target, 0))
    if n_target < 3:
        doc.p(
            f"Caution: the test split has {_n(n_target, target + ' patient')}; "
            f"{target} recall is close to a single patient's outcome and its interval says so."
        )
    doc.h(2, "Accuracy, macro F1 and macro precision (%), as the study's Table 3")
    header = ["Strategy"] + [f"{a} {lab}" for a in archs for _, lab in TABLE3]
    rows = []
    for s in strategies:
        row = [s]
        for a in archs:
            e = agg.get(f"{s}-{a}")
            for m, _ in TABLE3:
                row.append(_fmt(e[m]["value"], e[m]["lo"], e[m]["hi"]) if e else "-")
        rows.append(row)
    doc.table(header, rows)
    if comparison:
        doc.h(2, f"Paired differences with `{ev.baseline}` (same architecture, seeds, draws)")
        doc.p(
            "Difference in percentage points with its interval over test patients; 'not "
            "significant' when the interval spans 0. The last column shows the difference for "
            "each training seed: when those disagree in sign, the seed matters as much as the "
            "strategy."
        )
        header = [
            "Strategy",
            "Arch",
            "Δ accuracy",
            "Δ macro F1",
            "Δ macro precision",
            f"Δ {target} recall",
            "macro F1 verdict",
            f"{target} recall verdict",
            "Δ macro F1 per seed",
        ]
        rows = []
        for e in comparison.values():
            cells = [
                _fmt(e[m]["diff"], e[m]["lo"], e[m]["hi"])
                for m in ("accuracy", "f1_macro", "precision_macro", f"recall_{target}")
            ]
            rows.append(
                [
                    e["strategy"],
                    e["architecture"],
                    *cells,
                    e["f1_macro"]["verdict"],
                    e[f"recall_{target}"]["verdict"],
                    ", ".join(f"{100 * d:+.1f}" for d in e["seed_diffs_f1_macro"]),
                ]
            )
        doc.table(header, rows)
        for key in ("diff_f1_macro", f"diff_recall_{target}"):
            if key in figures:
                doc.image(figures[key], key)
    doc.h(2, "Per-class recall (%)")
    doc.image(figures["recall_bars"], "per-class recall")
    doc.table(
        ["Strategy", "Arch", *classes],
        [
            [
                e["strategy"],
                e["architecture"],
                *(
                    _fmt(e[f"recall_{c}"]["value"], e[f"recall_{c}"]["lo"], e[f"recall_{c}"]["hi"])
                    for c in classes
                ),
            ]
            for e in agg.values()
        ],
    )
    doc.h(2, "More metrics (%)")
    more = ("balanced_accuracy", "f1_weighted", "recall_macro", "roc_auc_macro", "video_accuracy")
    doc.table(
        [
            "Strategy",
            "Arch",
            "balanced acc",
            "weighted F1",
            "macro recall",
            "ROC-AUC (OvR)",
            "video acc",
        ],
        [
            [
                e["strategy"],
                e["architecture"],
                *(_fmt(e[m]["value"], e[m]["lo"], e[m]["hi"]) for m in more),
            ]
            for e in agg.values()
        ],
    )
    doc.h(2, "Confusion matrices (test, summed over seeds)")
    doc.image(figures["confusion_grid"], "confusion matrices")
    doc.h(2, "Training curves (validation macro-F1, training loss)")
    doc.image(figures["curves_f1"], "validation macro-F1 per epoch")
    doc.image(figures["curves_loss"], "training loss per epoch")
    doc.h(2, "How to read this")
    doc.bullets(
        [
            (
                "The winner for the registry is chosen on validation metrics only "
                "(metrics/validation_runs.json); these test numbers are for reporting."
            ),
            "Video accuracy averages the class probabilities of each video's frames.",
            "ROC-AUC is one-vs-rest per class, macro-averaged over the classes present.",
            "A class missing from a bootstrap draw is left out of that draw's per-class metrics.",
        ]
    )
    write_report(doc, path, "lusaug classifier comparison")


def _log_mlflow(
    params: Params,
    runs: list[RunRecord],
    per_run: dict,
    agg: dict,
    comparison: dict,
    out: EvaluateOutputs,
    figures: dict[str, Path],
    root: Path | str,
) -> None:
    from lusaug.mlflow_store import setup_experiment
    from lusaug.models.tracking import log_to_runs

    setup_experiment("classifiers", params.mlflow.tracking_uri, root)
    for r in runs:
        run_id = r.info.get("mlflow_run_id")
        if run_id:
            vals = {
                f"test_{m}": v["value"] for m, v in per_run[r.name].items() if isinstance(v, dict)
            }
            log_to_runs([run_id], vals, [out.plots / "figures" / f"confusion_{r.name}.png"])
    parents = sorted(
        {r.info["mlflow_parent_run_id"] for r in runs if r.info.get("mlflow_parent_run_id")}
    )
    if not parents:
        return
    metrics: dict[str, float] = {}
    for name, e in agg.items():
        for m in (*HEADLINE, f"recall_{params.base.target_class}"):
            for kk in ("value", "lo", "hi"):
                suffix = "" if kk == "value" else f"_{kk}"
                metrics[f"test.{name}.{m}{suffix}"] = e[m][kk]
    for name, e in comparison.items():
        for m in ("accuracy", "f1_macro", f"recall_{params.base.target_class}"):
            metrics[f"diff.{name}.{m}"] = e[m]["diff"]
    files = [
        out.report,
        out.report.with_suffix(".html"),
        out.metrics,
        out.comparison,
        *figures.values(),
    ]
    log_to_runs(parents, metrics, files)
