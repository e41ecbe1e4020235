"""DVC stage `generate@G`: train generator G on training frames, write its candidates.

Usage: python pipelines/generate.py G data/splits.csv metrics/validation.json \
    models/generators/G data/synthetic/G/candidates [--checkpoints DIR] [--resume]
``--resume`` continues an interrupted training from the newest checkpoint in DIR (ignored when
the checkpoint was made with other params or data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.generators.data import GeneratorDataError
from lusaug.generators.stages import run_generate
from lusaug.generators.textual_inversion import TextualInversionError
from lusaug.utils import seed_everything, setup_logging


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator")
    ap.add_argument("splits_csv", type=Path)
    ap.add_argument("validation_json", type=Path)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("candidates_dir", type=Path)
    ap.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    ap.add_argument("--resume", action="store_true", help="resume from the newest checkpoint")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    params = load_params()
    seed_everything(params.base.seed)
    try:
        summary = run_generate(
            args.generator,
            args.splits_csv,
            args.model_dir,
            args.candidates_dir,
            params,
            checkpoint_dir=args.checkpoints,
            resume=args.resume,
            validation_json=args.validation_json,
        )
    except (GeneratorDataError, TextualInversionError, FileNotFoundError) as err:
        raise SystemExit(f"generate@{args.generator} failed: {err}") from err
    leaky = " [LEAKY]" if summary["leaky"] else ""
    print(
        f"generate@{args.generator}{leaky}: {summary['candidates']} candidates from "
        f"{summary['train_frames']} training frames ({summary['train_patients']} patients)"
    )


if __name__ == "__main__":
    main()
