"""DVC stages `train`, `train_tuned`, `train_synthetic`: one classifier run per matrix item.

Usage:
    python pipelines/train.py SPLITS_CSV OUT_DIR --strategy S --arch A --seed N
        [--tuned params/tuned.yaml] [--synthetic-dir data/synthetic] [--resume] [--no-tracking]

OUT_DIR is ``models/classifiers/<S>-<A>-<N>``. ``--resume`` continues an interrupted run from
OUT_DIR/last.pt (a run whose params or data changed starts afresh). Strategy names:
baseline | class_weights | class_weights_norm | oversample | class_weights_tuned | synthetic-<G>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.models.data import DataError
from lusaug.models.strategies import DEFAULT_TUNED_PATH
from lusaug.utils import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="data/splits.csv")
    ap.add_argument("out_dir", type=Path, help="models/classifiers/<strategy>-<arch>-<seed>")
    ap.add_argument("--strategy", required=True, help="imbalance strategy name")
    ap.add_argument("--arch", required=True, help="a key of train.architectures")
    ap.add_argument("--seed", required=True, type=int, help="training seed")
    ap.add_argument(
        "--tuned",
        type=Path,
        default=DEFAULT_TUNED_PATH,
        help="tuned class weights for class_weights_tuned (the tune stage's output)",
    )
    ap.add_argument(
        "--synthetic-dir",
        type=Path,
        default=Path("data/synthetic"),
        help="folder with <generator>/kept/*.png for synthetic-<generator>",
    )
    ap.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    params = load_params()
    from lusaug.models.train import train_classifier  # torch/timm import after argv checks

    try:
        result = train_classifier(
            params,
            args.splits_csv,
            args.out_dir,
            args.strategy,
            args.arch,
            args.seed,
            tuned_path=args.tuned,
            synthetic_dir=args.synthetic_dir,
            resume=args.resume,
            tracking=not args.no_tracking,
        )
    except DataError as err:
        raise SystemExit(f"train {args.out_dir.name} failed: {err}") from None
    m = result.val_metrics
    print(
        f"{result.run}: best epoch {result.best_epoch}/{result.epochs_run}, "
        f"val macro-F1 {m.get('f1_macro', float('nan')):.3f}, "
        f"val accuracy {m.get('accuracy', float('nan')):.3f} ({result.seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
