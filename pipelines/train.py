"""DVC stage `train@<fold>`: every strategy x architecture x seed of one fold, in one process.

Finished runs whose params and inputs did not change are kept, an interrupted run resumes from
its last epoch, runs no longer planned are removed, and a run whose generator the fold's filter
blocked records why (skipped.json). Strategy names: see src/lusaug/models/strategies.py.

Usage:
    python pipelines/train.py data/splits/fold-K.csv models/classifiers/fold-K --fold K
        --synthetic data/synthetic/fold-K --tuned params/tuned/fold-K.yaml
        --generator-metrics metrics/fold-K [--no-tracking]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import as_flat_dict, load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.models.mlflow_runs import RunTracking
from lusaug.stages import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits/fold-<k>.csv")
    ap.add_argument("out_dir", type=Path, help="models/classifiers/fold-<k> (one folder per run)")
    ap.add_argument("--fold", type=int, required=True, help="the fold index")
    ap.add_argument("--synthetic", type=Path, help="data/synthetic/fold-<k> (generator sets)")
    ap.add_argument("--tuned", type=Path, help="params/tuned/fold-<k>.yaml (tuned strategies)")
    ap.add_argument(
        "--generator-metrics", type=Path, help="metrics/fold-<k> (which generators are blocked)"
    )
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors(f"train@{args.fold}"):
        params = load_params()
        tracking = None
        if not args.no_tracking:
            tracking = RunTracking(
                params.mlflow.tracking_uri, as_flat_dict(params), splits_csv=args.splits_csv
            )
        paths = train.TrainPaths(
            args.splits_csv, args.out_dir, args.synthetic, args.tuned, args.generator_metrics
        )
        outcomes = train.run(paths, params.base, params.train, fold=args.fold, tracking=tracking)
    print(f"train@{args.fold}: {train.summarise(outcomes)}")
    for o in outcomes:
        if o.status == "skipped":
            print(f"  {o.run}: skipped ({o.reason})")


if __name__ == "__main__":
    main()
