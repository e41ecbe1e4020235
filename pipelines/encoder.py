"""DVC stage `encoder@k`: the fold's real-trained classifier whose features are the fidelity space.

Usage: python pipelines/encoder.py data/splits/fold-<k>.csv metrics/validation.json \
    models/fold-<k>/encoder metrics/fold-<k>/encoder.json [--fold K]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params, parse_fold
from lusaug.core.errors import stage_errors
from lusaug.core.utils import seed_everything, setup_logging
from lusaug.stages import encoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="the fold's splits CSV (train/val/test)")
    ap.add_argument("validation_json", type=Path, help="metrics/validation.json (must pass)")
    ap.add_argument("out_dir", type=Path, help="models/fold-<k>/encoder")
    ap.add_argument("metrics_json", type=Path, help="metrics/fold-<k>/encoder.json")
    ap.add_argument(
        "--fold", type=parse_fold, default=None, help="fold index or final (MLflow tag)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("encoder"):
        params = load_params()
        seed_everything(params.base.seed)
        paths = encoder.EncoderPaths(
            args.splits_csv, args.out_dir, args.metrics_json, args.validation_json
        )
        s = encoder.run(
            paths,
            params.base,
            params.train,
            params.filter.encoder,
            params.mlflow,
            enabled=params.generate.enabled,
            threads=params.generate.threads,
            fold=args.fold,
        )
    if not s["trained"]:
        print(f"encoder: nothing to train ({s['skipped']})")
        return
    print(
        f"encoder: {s['strategy']}-{s['architecture']}, {s['num_features']}-d features; val "
        f"balanced accuracy {s['val_balanced_accuracy']}"
    )


if __name__ == "__main__":
    main()
