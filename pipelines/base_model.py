"""DVC stage `base_model@k`: the text-conditioned base, trained on the fold's other classes.

Usage: python pipelines/base_model.py data/splits/fold-<k>.csv metrics/validation.json \
    models/fold-<k>/base_model [--checkpoints DIR] [--resume] [--fold K]
With generate.base set to a local Stable Diffusion folder nothing trains (the folder says so).
``--resume`` continues from the newest checkpoint in DIR (ignored when params or data changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params, parse_fold
from lusaug.core.errors import stage_errors
from lusaug.core.utils import seed_everything, setup_logging
from lusaug.stages import base_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="the fold's splits CSV (train/val/test)")
    ap.add_argument("validation_json", type=Path, help="metrics/validation.json (must pass)")
    ap.add_argument("out_dir", type=Path, help="models/fold-<k>/base_model")
    ap.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    ap.add_argument("--resume", action="store_true", help="resume from the newest checkpoint")
    ap.add_argument(
        "--fold", type=parse_fold, default=None, help="fold index or final (MLflow tag)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("base_model"):
        params = load_params()
        seed_everything(params.base.seed)
        paths = base_model.BaseModelPaths(
            args.splits_csv, args.out_dir, args.checkpoints, args.validation_json
        )
        s = base_model.run(
            paths,
            params.base,
            params.base_model,
            params.generate,
            params.mlflow,
            resume=args.resume,
            fold=args.fold,
        )
    if "external" in s:
        print(f"base_model: using the local checkpoint {s['external']} (generate.base)")
    elif not s["trained"]:
        print(f"base_model: nothing to train ({s['skipped']})")
    elif "train_seconds" not in s:
        print(f"base_model: kept the base in {args.out_dir} (same settings and frames)")
    else:
        print(
            f"base_model: {s['train_steps']} steps on {s['train_frames']} frames of "
            f"{s['classes']} ({s['train_seconds']:.0f} s, {s['train_images_per_second']:.1f} img/s)"
        )


if __name__ == "__main__":
    main()
