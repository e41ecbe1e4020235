"""DVC stage `evaluate`: every run's pooled out-of-fold test predictions (read once), and the verdicts.

Each frame is predicted by the model of the fold that tests it. Per setting the rare class's
per-patient endpoints and the population metrics with intervals over patients and seeds; per
comparison the exact patient-level test, Holm within the family and the verdict; the
pre-registered primary, the placebo, the MDD and study size from the placebo; the pooled
validation metrics choose the final model (metrics/selection.json).

Usage:
    python pipelines/evaluate.py data/splits models/classifiers --metrics metrics/test.json
        --runs metrics/test_runs.json --comparison metrics/comparison.json
        --validation metrics/validation_runs.json --selection metrics/selection.json
        --rare metrics/rare_patients.json --summary metrics/summary.json
        --predictions reports/predictions --plots plots/evaluate --report reports/comparison.md
        [--no-tracking]
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
        ("metrics", "pooled metrics per setting with intervals"),
        ("runs", "pooled metrics per run"),
        ("comparison", "the verdicts and everything they rest on"),
        ("validation", "pooled validation metrics per run"),
        ("selection", "the setting the final model refits"),
        ("rare", "recall, AUROC and AP per rare-class patient"),
        ("summary", "the headline numbers (dvc metrics show)"),
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
            args.summary,
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
    endpoint = params.evaluate.primary.endpoint
    for name, why in summary["unavailable"].items():
        print(f"{name:44s} not evaluated: {next(iter(why.values()))}")
    for name, e in summary["settings"].items():
        print(
            f"{name:44s} macro-F1 {_iv(e, 'f1_macro')}  {target} {endpoint} "
            f"{_iv(e, f'rare_{endpoint}')}  {e['decision']}"
        )
    head = summary["summary"]
    pr = head["primary"]
    print(
        f"primary: {' vs '.join(pr['spec'][:2])} ({pr['spec'][2]}), {endpoint} "
        f"{_num(pr['diff'], '+.3f')} [{_num(pr['lo'])}, {_num(pr['hi'])}], exact p "
        f"{_num(pr['p'], '.4f')}: {pr['verdict']}"
    )
    print(f"placebo ({pr['spec'][2]}): {head['placebo']}")
    chosen = summary["selection"]["chosen"]
    print(f"final model: {chosen['setting']} (pooled validation {summary['selection']['metric']})")
    print(f"report: {args.report} and {args.report.with_suffix('.html')}")


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _iv(e: dict, m: str) -> str:
    return f"{_num(e.get(m))} [{_num(e.get(m + '_lo'))}, {_num(e.get(m + '_hi'))}]"


if __name__ == "__main__":
    main()
