"""DVC stage `encoder`: the domain encoder that KID/FID and the memorisation check use.

A small CNN trained on the real training frames of every class (shared by all filter@G stages).
Usage: python pipelines/encoder.py data/splits.csv metrics/validation.json models/encoder \
    metrics/encoder.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.generators.data import GeneratorDataError
from lusaug.generators.stages import run_encoder
from lusaug.utils import seed_everything, setup_logging


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        raise SystemExit("usage: encoder.py SPLITS_CSV VALIDATION_JSON OUT_DIR METRICS_JSON")
    splits_csv, validation_json, out_dir, metrics_json = map(Path, argv)
    setup_logging()
    params = load_params()
    seed_everything(params.base.seed)
    try:
        summary = run_encoder(splits_csv, out_dir, metrics_json, params, validation_json)
    except (GeneratorDataError, FileNotFoundError) as err:
        raise SystemExit(f"encoder failed: {err}") from err
    print(
        f"encoder: {summary['num_features']}-d features; val balanced accuracy "
        f"{summary['val_balanced_accuracy']}"
    )


if __name__ == "__main__":
    main()
