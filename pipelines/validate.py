"""DVC stage `validate`: Great Expectations over every fold's split and its frames; exit 1 on failure.

Checks each fold (schema, PNGs, every class in every split, no patient / video / identical or
near-identical frame in two splits) and, across folds, that every patient is tested in exactly one
fold. Data Docs (reports/validation/index.html) and the metrics JSON are written in both cases, so a
failing run can be inspected; the non-zero exit stops `dvc repro` before anything trains.

Usage: python pipelines/validate.py data/splits reports/split.json reports/validation \
    metrics/validation.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.stages import validate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("splits_dir", type=Path, help="data/splits (fold-<k>.csv per fold)")
    ap.add_argument("split_report", type=Path, help="reports/split.json (documented fallbacks)")
    ap.add_argument("docs_dir", type=Path, help="reports/validation (Data Docs)")
    ap.add_argument("metrics", type=Path, help="metrics/validation.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("validate"):
        params = load_params()
        paths = validate.ValidatePaths(
            args.splits_dir, args.docs_dir, args.metrics, args.split_report
        )
        report = validate.run(
            paths, params.base, params.validate, params.frames, folds=params.split.folds
        )
    if not report.success:
        raise SystemExit(report.message())
    print(report.message())


if __name__ == "__main__":
    main()
