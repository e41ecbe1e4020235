"""DVC stage `evaluate`: every planned classifier run on the test split (read once).

Usage:
    python pipelines/evaluate.py SPLITS_CSV MODELS_DIR --metrics metrics/test.json
        --runs metrics/test_runs.json --comparison metrics/comparison.json
        --validation metrics/validation_runs.json --plots plots/evaluate
        --report reports/comparison.md [--no-tracking]

The runs are the train stages' matrix (train.strategies + tuned_strategies + synthetic-<G> for
train.generators, x architectures x seeds); a missing or unfinished run is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.models.data import DataError
from lusaug.utils import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits.csv")
    ap.add_argument("models_dir", type=Path, help="models/classifiers")
    ap.add_argument("--metrics", type=Path, required=True, help="aggregated test metrics JSON")
    ap.add_argument("--runs", type=Path, required=True, help="per-run test metrics JSON")
    ap.add_argument("--comparison", type=Path, required=True, help="paired differences JSON")
    ap.add_argument("--validation", type=Path, required=True, help="per-run validation JSON")
    ap.add_argument("--plots", type=Path, required=True, help="folder for plot CSVs and PNGs")
    ap.add_argument("--report", type=Path, required=True, help="comparison .md (+ .html)")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    params = load_params()
    from lusaug.models.data import load_split
    from lusaug.models.evaluate import EvaluateOutputs, evaluate_records, load_runs

    out = EvaluateOutputs(
        args.metrics, args.runs, args.comparison, args.validation, args.plots, args.report
    )
    try:
        test = load_split(args.splits_csv, "test", params.base.classes, params.base.image_size)
        runs = load_runs(params, args.models_dir, test)
        summary = evaluate_records(params, test, runs, out, tracking=not args.no_tracking)
    except DataError as err:
        raise SystemExit(f"evaluate failed: {err}") from None
    for name, e in summary["settings"].items():
        f1, acc = e["f1_macro"], e["accuracy"]
        print(
            f"{name:40s} acc {acc['value']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}]  "
            f"macro-F1 {f1['value']:.3f} [{f1['lo']:.3f}, {f1['hi']:.3f}]"
        )
    print(f"report: {args.report} and {args.report.with_suffix('.html')}")


if __name__ == "__main__":
    main()
