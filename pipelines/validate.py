"""DVC stage `validate`: Great Expectations over splits.csv and its frames; exits 1 on failure.

Usage: python pipelines/validate.py data/splits.csv reports/validation metrics/validation.json

Data Docs (reports/validation/index.html) and the metrics JSON are written in both cases, so a
failing run can be inspected; the non-zero exit stops `dvc repro` before anything trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.utils import setup_logging
from lusaug.validation import run_validation


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit("usage: validate.py SPLITS_CSV DOCS_DIR METRICS_JSON")
    splits_csv, docs_dir, metrics_json = map(Path, argv)
    setup_logging()
    params = load_params()
    try:
        report = run_validation(splits_csv, docs_dir, metrics_json, params)
    except FileNotFoundError as err:
        raise SystemExit(f"validate: {err}") from err
    if not report.success:
        raise SystemExit(report.message())
    print(report.message())


if __name__ == "__main__":
    main()
