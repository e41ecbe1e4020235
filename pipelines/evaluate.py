"""DVC stage `evaluate`: every run's pooled out-of-fold test predictions (read once), compared.

Each frame is predicted by the model of the fold that tests it. Metrics with stratified
patient-bootstrap intervals, paired differences with the baseline, the per-rare-patient table,
the decision rule and the minimum detectable difference; the pooled validation metrics choose the
final model (metrics/selection.json).

Usage:
    python pipelines/evaluate.py data/splits models/classifiers --metrics metrics/test.json
        --runs metrics/test_runs.json --comparison metrics/comparison.json
        --validation metrics/validation_runs.json --selection metrics/selection.json
        --rare metrics/rare_patients.json --predictions reports/predictions
        --plots plots/evaluate --report reports/comparison.md [--no-tracking]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.mlflow_store import tracking_uri
from lusaug.core.utils import setup_logging
from lusaug.stages import evaluate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_dir", type=Path, help="data/splits (fold-<k>.csv)")
    ap.add_argument("models_dir", type=Path, help="models/classifiers (fold-<k>/<run>)")
    for name, what in (
        ("metrics", "pooled metrics per setting (dvc metrics)"),
        ("runs", "pooled metrics per run"),
        ("comparison", "paired differences, decisions, MDD"),
        ("validation", "pooled validation metrics per run"),
        ("selection", "the setting the final model refits"),
        ("rare", "recall per rare-class patient"),
        ("predictions", "folder of pooled out-of-fold predictions per run"),
        ("plots", "folder for plot CSVs and PNGs"),
        ("report", "comparison .md (+ .html)"),
    ):
        ap.add_argument(f"--{name}", type=Path, required=True, help=what)
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("evaluate"):
        params = load_params()
        paths = evaluate.EvaluatePaths(
            args.splits_dir,
            args.models_dir,
            args.metrics,
            args.runs,
            args.comparison,
            args.validation,
            args.selection,
            args.rare,
            args.predictions,
            args.plots,
            args.report,
        )
        summary = evaluate.run(
            paths,
            params.base,
            params.train,
            params.evaluate,
            folds=params.split.folds,
            select_metric=params.final.metric,
            tracking_uri=None if args.no_tracking else tracking_uri(params.mlflow.tracking_uri),
        )
    target = params.base.target_class
    for name, e in summary["settings"].items():
        if "unavailable" in e:
            print(f"{name:44s} not evaluated: {next(iter(e['unavailable'].values()))}")
            continue
        f1, rare = e["f1_macro"], e[f"recall_{target}"]
        decision = summary["comparison"].get(name, {}).get("decision", "baseline")
        print(
            f"{name:44s} macro-F1 {f1['value']:.3f} [{f1['lo']:.3f}, {f1['hi']:.3f}]  "
            f"{target} recall {rare['value']:.3f} [{rare['lo']:.3f}, {rare['hi']:.3f}]  "
            f"{decision}"
        )
    chosen = summary["selection"]["chosen"]
    print(f"final model: {chosen['setting']} (pooled validation {summary['selection']['metric']})")
    print(f"report: {args.report} and {args.report.with_suffix('.html')}")


if __name__ == "__main__":
    main()
