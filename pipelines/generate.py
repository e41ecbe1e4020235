"""DVC stage `generate@k-G`: train generator G on the fold's training frames, write candidates.

Usage: python pipelines/generate.py G data/splits/fold-<k>.csv metrics/validation.json \
    models/fold-<k>/base_model models/fold-<k>/generators/G \
    data/synthetic/fold-<k>/G/candidates [--checkpoints DIR] [--resume] [--fold K]
Textual inversion and fine-tuning build on the base folder (or generate.base when set).
``--resume`` continues an interrupted training from the newest checkpoint in DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params, parse_fold
from lusaug.core.errors import stage_errors
from lusaug.core.utils import seed_everything, setup_logging
from lusaug.stages import generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", help="a key of generate.generators")
    ap.add_argument("splits_csv", type=Path, help="the fold's splits CSV (train/val/test)")
    ap.add_argument("validation_json", type=Path, help="metrics/validation.json (must pass)")
    ap.add_argument("base_dir", type=Path, help="models/fold-<k>/base_model")
    ap.add_argument("model_dir", type=Path, help="models/fold-<k>/generators/G")
    ap.add_argument("candidates_dir", type=Path, help="data/synthetic/fold-<k>/G/candidates")
    ap.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    ap.add_argument("--resume", action="store_true", help="resume from the newest checkpoint")
    ap.add_argument(
        "--fold", type=parse_fold, default=None, help="fold index or final (MLflow tag)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors(f"generate@{args.generator}"):
        params = load_params()
        seed_everything(params.base.seed)
        paths = generate.GeneratePaths(
            args.splits_csv,
            args.base_dir,
            args.model_dir,
            args.candidates_dir,
            args.checkpoints,
            args.validation_json,
        )
        s = generate.run(
            paths,
            args.generator,
            params.base,
            params.generate,
            params.mlflow,
            resume=args.resume,
            fold=args.fold,
        )
    leaky = " [LEAKY]" if s["leaky"] else ""
    print(
        f"generate@{args.generator}{leaky}: {s['candidates']} candidates from "
        f"{s['train_frames']} training frames ({s['train_patients']} patients)"
    )


if __name__ == "__main__":
    main()
