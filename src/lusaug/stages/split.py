"""Stage ``split``: ``data/frames.csv`` (+ PNGs) -> ``data/splits/{fold-<k>,final}.csv`` and
``reports/split.json``.

Patient-grouped and class-stratified (:mod:`lusaug.data.split`): cross-validation in which every
patient group of the rarest class is tested exactly once (``split.scheme: cv``), or one hold-out
split (fold 0). Patients that share an identical or near-identical frame stay together; the
report lists them with the frame pair that links them. ``fold-final.csv`` is the final model's split:
every patient trains or validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import BaseParams, SplitParams, ValidateParams
from lusaug.core.utils import atomic_path, write_json
from lusaug.data.manifest import read_manifest, write_manifest
from lusaug.data.split import fold_file, relocate, split_frames


@dataclass(frozen=True)
class SplitPaths:
    manifest: Path  # data/frames.csv
    splits: Path  # data/splits (fold-<k>.csv per fold + fold-final.csv)
    report: Path  # reports/split.json


def run(
    paths: SplitPaths, base: BaseParams, split: SplitParams, validate: ValidateParams
) -> dict[str, Any]:
    """Split the manifest's patients into folds; write every fold file and the report.

    ``base`` gives the classes and the seed, ``validate`` the near-identical frame test that links
    patients (the same test the ``validate`` stage applies). Returns the report.
    """
    manifest = Path(paths.manifest)
    folds, summary = split_frames(
        read_manifest(manifest),
        manifest.resolve().parent,
        split,
        validate,
        base.classes,
        base.seed,
    )
    with atomic_path(paths.splits, is_dir=True) as tmp:
        for fold in folds:  # paths are relative to the CSV: one level below frames.csv
            write_manifest(relocate(fold.frames), tmp / fold_file(fold.fold))
    write_json(paths.report, summary)
    return summary
