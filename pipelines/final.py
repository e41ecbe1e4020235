"""DVC stage `final`: train the setting chosen on pooled validation on every patient.

Trains the strategy x architecture that metrics/selection.json names (validation only) on
data/splits/fold-final.csv, with the kept images and tuned values that the final split's items of
the per-fold stages made. The register stage adds its cross-validated estimate and verdicts to
the model card, so a change of the verdicts (e.g. of evaluate.primary) never retrains it.

Usage:
    python pipelines/final.py data/splits/fold-final.csv metrics/selection.json models/final
        metrics/final.json --synthetic data/synthetic/fold-final --tuned params/tuned/fold-final.yaml
        --generator-metrics metrics/fold-final [--no-tracking]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import as_flat_dict, load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.models.mlflow_runs import RunTracking
from lusaug.stages import final


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits/fold-final.csv")
    ap.add_argument("selection", type=Path, help="metrics/selection.json")
    ap.add_argument("out_dir", type=Path, help="models/final")
    ap.add_argument("metrics", type=Path, help="metrics/final.json")
    ap.add_argument("--synthetic", type=Path, help="data/synthetic/fold-final (kept images)")
    ap.add_argument("--tuned", type=Path, help="params/tuned/fold-final.yaml")
    ap.add_argument("--generator-metrics", type=Path, help="metrics/fold-final (blocked ones)")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("final"):
        params = load_params()
        tracking = None
        if not args.no_tracking:
            tracking = RunTracking(
                params.mlflow.tracking_uri, as_flat_dict(params), splits_csv=args.splits_csv
            )
        paths = final.FinalPaths(
            args.splits_csv,
            args.selection,
            args.out_dir,
            args.metrics,
            synthetic=args.synthetic,
            tuned=args.tuned,
            generator_metrics=args.generator_metrics,
        )
        summary = final.run(paths, params, tracking=tracking)
    metric = params.final.metric
    print(
        f"final: {summary['setting']} trained on {summary['train_frames']} frames "
        f"(validation {metric} {summary['validation'][metric]:.3f})"
    )
    for setting, why in summary["passed_over"].items():
        print(f"  passed over {setting}: {why}")


if __name__ == "__main__":
    main()
