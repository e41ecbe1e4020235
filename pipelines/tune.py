"""DVC stage `tune`: Optuna over per-class loss weights, learning rate (and filter thresholds).

Usage:
    python pipelines/tune.py SPLITS_CSV TUNED_YAML PLOTS_DIR [--synthetic-dir data/synthetic]
    python pipelines/tune.py SPLITS_CSV --worker --target-total N      # an extra worker

Each trial trains one classifier on the train split and is scored on the validation split
(tune.metric); the study lives in tune.storage (resumable: a re-run adds tune.n_trials trials).
Writes TUNED_YAML (class_weights, lr, filter thresholds: read by class_weights_tuned) and the
optimisation-history / parameter-importance plots. Extra workers on another machine run the
second form with the same params (tune.storage pointing at a shared database).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.config import PARAMS_PATH, load_params
from lusaug.utils import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits.csv")
    ap.add_argument("tuned", type=Path, nargs="?", help="params/tuned.yaml (output)")
    ap.add_argument("plots", type=Path, nargs="?", help="plots/tune (output folder)")
    ap.add_argument(
        "--synthetic-dir",
        type=Path,
        default=Path("data/synthetic"),
        help="filter@G outputs, for tune.filter_generator",
    )
    ap.add_argument("--worker", action="store_true", help="only run trials (no outputs)")
    ap.add_argument(
        "--target-total", type=int, default=None, help="worker: stop at this many trials"
    )
    args = ap.parse_args(argv)
    if not args.worker and (args.tuned is None or args.plots is None):
        ap.error("TUNED_YAML and PLOTS_DIR are required unless --worker")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    params = load_params()
    from lusaug.tuning.study import TuneError, optimise, tune

    try:
        if args.worker:
            optimise(
                params,
                args.splits_csv,
                target_total=args.target_total,
                synthetic_dir=args.synthetic_dir,
            )
            return
        data = tune(
            params,
            PARAMS_PATH,
            args.splits_csv,
            args.tuned,
            args.plots,
            synthetic_dir=args.synthetic_dir,
        )
    except TuneError as err:
        raise SystemExit(f"tune failed: {err}") from None
    s = data["study"]
    print(
        f"{s['name']}: best trial {s['best_trial']} of {s['trials']} ({s['pruned']} pruned), "
        f"{params.tune.metric} {s[params.tune.metric]:.3f}; weights {data['class_weights']}, "
        f"lr {data['lr']:.2e} -> {args.tuned}"
    )


if __name__ == "__main__":
    main()
