"""DVC stage `base_model@k`: the text-conditioned base, trained on the fold's other classes.

Usage: python pipelines/base_model.py data/splits/fold-<k>.csv metrics/validation.json \
    models/fold-<k>/base_model [--checkpoints DIR] [--resume] [--fold K]
With generate.base set to a local Stable Diffusion folder nothing trains (the folder says so).
``--resume`` continues from the newest checkpoint in DIR (ignored when params or data changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import seed_everything, setup_logging
from lusaug.generators.stages.base_model import run_base_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_csv", type=Path, help="the fold's splits CSV (train/val/test)")
    ap.add_argument("validation_json", type=Path, help="metrics/validation.json (must pass)")
    ap.add_argument("out_dir", type=Path, help="models/fold-<k>/base_model")
    ap.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    ap.add_argument("--resume", action="store_true", help="resume from the newest checkpoint")
    ap.add_argument("--fold", type=int, default=None, help="fold index (MLflow tag)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = load_params()
    seed_everything(params.base.seed)
    with stage_errors("base_model"):
        s = run_base_model(
            args.splits_csv,
            args.out_dir,
            params.base,
            params.base_model,
            params.mlflow,
            external=params.generate.base,
            threads=params.generate.threads,
            checkpoint_dir=args.checkpoints,
            resume=args.resume,
            validation_json=args.validation_json,
            fold=args.fold,
        )
    if not s["trained"]:
        print(f"base_model: using the local checkpoint {s['external']} (generate.base)")
        return
    print(
        f"base_model: {s['train_steps']} steps on {s['train_frames']} frames of {s['classes']} "
        f"({s['train_seconds']:.0f} s, {s['train_images_per_second']:.1f} img/s)"
    )


if __name__ == "__main__":
    main()
