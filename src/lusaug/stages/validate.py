"""Stage ``validate``: Great Expectations over every fold's split and its frames.

Checks each fold (schema, PNGs, every class in every split, no patient / video / identical or
near-identical frame in two splits) and, across folds, that every patient is tested in exactly
one fold (:mod:`lusaug.validation`). Data Docs and the metrics JSON are written whether or not the
data passes, so a failing run can be inspected; the pipeline script then exits non-zero, which
stops ``dvc repro`` before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lusaug.core.config import BaseParams, FramesParams, ValidateParams
from lusaug.core.utils import atomic_path, write_json
from lusaug.validation import (
    Sections,
    ValidationReport,
    documented_fallbacks,
    read_folds,
    validate_folds,
)


@dataclass(frozen=True)
class ValidatePaths:
    splits: Path  # data/splits (fold-<k>.csv per fold + fold-final.csv)
    docs: Path  # reports/validation (Data Docs)
    metrics: Path  # metrics/validation.json
    split_report: Path | None = None  # reports/split.json (the documented fallbacks)


def run(
    paths: ValidatePaths,
    base: BaseParams,
    validate: ValidateParams,
    frames: FramesParams,
    *,
    folds: list[int],
) -> ValidationReport:
    """Validate every fold of ``folds`` (``split.folds``) and the final split; write Data Docs
    and the metrics JSON atomically (the docs are built in a temporary sibling folder and renamed
    over ``paths.docs``). ``frames`` gives the pixel-statistics bounds the frames stage kept."""
    sections = Sections(base, validate, frames)
    tables = read_folds(paths.splits, folds)
    with atomic_path(paths.docs, is_dir=True) as tmp:
        exempt = documented_fallbacks(paths.split_report, base.classes)
        report = validate_folds(tables, Path(paths.splits).resolve(), sections, tmp, exempt)
    report.docs_index = Path(paths.docs) / "index.html"
    write_json(paths.metrics, report.to_metrics())
    return report
