"""DVC stage `tune@<fold>`: Optuna over class weights, lr (and filter thresholds) on one fold.

One study per tuned strategy in train.strategies (class_weights_tuned, synthetic_tuned-<G>), on
the fold's train/val patients only. Each study runs until it holds tune.n_trials finished trials;
with one worker the tuned file is a pure function of the inputs (the same bytes on a re-run).

Usage:
    python pipelines/tune.py data/splits/fold-K.csv params/tuned/fold-K.yaml plots/tune/fold-K
        --fold K --synthetic data/synthetic/fold-K --generator-metrics metrics/fold-K
        [--no-tracking]
    python pipelines/tune.py data/splits/fold-K.csv --fold K --synthetic data/synthetic/fold-K
        --strategy S --worker       # an extra worker on a shared tune.storage
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.core.config import PARAMS_PATH, load_params, parse_fold
from lusaug.core.errors import stage_errors
from lusaug.core.mlflow_store import tracking_uri
from lusaug.core.utils import setup_logging
from lusaug.stages import tune


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits/fold-<k>.csv")
    ap.add_argument("tuned", type=Path, nargs="?", help="params/tuned/fold-<k>.yaml (output)")
    ap.add_argument("plots", type=Path, nargs="?", help="plots/tune/fold-<k> (output folder)")
    ap.add_argument("--fold", type=parse_fold, required=True, help="the fold index, or final")
    ap.add_argument("--synthetic", type=Path, help="data/synthetic/fold-<k> (filter tables)")
    ap.add_argument(
        "--generator-metrics", type=Path, help="metrics/fold-<k> (the filter's thresholds)"
    )
    ap.add_argument("--worker", action="store_true", help="only run trials of --strategy")
    ap.add_argument("--strategy", help="worker: the tuned strategy whose study to join")
    ap.add_argument("--no-tracking", action="store_true", help="do not log trials to MLflow")
    args = ap.parse_args(argv)
    if args.worker and not args.strategy:
        ap.error("--worker needs --strategy")
    if not args.worker and (args.tuned is None or args.plots is None):
        ap.error("TUNED_YAML and PLOTS_DIR are required unless --worker")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors(f"tune@{args.fold}"):
        params = load_params()
        paths = tune.TunePaths(
            args.splits_csv, args.tuned, args.plots, args.synthetic, args.generator_metrics
        )
        sections = (params.base, params.train, params.tune)
        uri = None if args.no_tracking else tracking_uri(params.mlflow.tracking_uri)
        if args.worker:
            tune.work(paths, args.strategy, *sections, fold=args.fold, tracking_uri=uri)
            return
        worker_argv = [str(args.splits_csv), "--fold", str(args.fold)]
        for flag, value in (
            ("--synthetic", args.synthetic),
            ("--generator-metrics", args.generator_metrics),
        ):
            if value is not None:
                worker_argv += [flag, str(value)]
        if args.no_tracking:
            worker_argv.append("--no-tracking")
        tuned = tune.run(
            paths,
            *sections,
            fold=args.fold,
            tracking_uri=uri,
            worker_argv=worker_argv,
            params_file=PARAMS_PATH,
        )
    metric = params.tune.metric
    for name, entry in tuned.items():
        if "blocked" in entry:
            print(f"tune@{args.fold} {name}: not tuned ({entry['blocked']})")
            continue
        s = entry["study"]
        print(
            f"tune@{args.fold} {name}: best trial {s['best_trial']} of {s['finished_trials']} "
            f"({s['pruned']} pruned), {metric} {s[metric]:.3f}; lr {entry['lr']:.2e}"
        )
    if not tuned:
        print(f"tune@{args.fold}: no tuned strategy in train.strategies; wrote {args.tuned}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
