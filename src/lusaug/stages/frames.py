"""Stage ``frames``: ``data/raw`` -> grey square PNGs, the ``data/frames.csv`` manifest and
``reports/ingest.json``.

For each media file: decode, sample, crop, trim black borders, convert to 8-bit grey, pad to a
square and resize to ``base.image_size`` (:mod:`lusaug.data.frames`); blank, near-black or
saturated frames are dropped. Every processed file, dropped frame and skipped file is in the
report with its reason (:mod:`lusaug.data.frames_report`). All three outputs are written to
temporary paths and renamed, so a failing run leaves the previous outputs as they were.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lusaug.core.config import BaseParams, FramesParams, ImportParams
from lusaug.core.utils import atomic_path, write_json
from lusaug.data.decode import FrameSettings
from lusaug.data.frames import process_files
from lusaug.data.frames_plan import FramesError, plan_tasks
from lusaug.data.frames_report import ingest_report, log_summary, missing_classes
from lusaug.data.manifest import MANIFEST_COLUMNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FramesPaths:
    raw: Path  # data/raw (videos, images, optional metadata.csv and crop.json)
    frames: Path  # data/frames (PNGs per class; replaced as a whole on success)
    manifest: Path  # data/frames.csv (paths inside are relative to its folder)
    report: Path  # reports/ingest.json (skipped files and dropped frames with the reasons)


def _check_settings(base: BaseParams, fp: FramesParams) -> None:
    problems = []
    if base.image_size < 1:
        problems.append(f"base.image_size must be >= 1, got {base.image_size}")
    if fp.sample_fps < 0:
        problems.append(f"frames.sample_fps must be >= 0, got {fp.sample_fps}")
    if fp.sample_fps == 0 and fp.every_n < 1:
        problems.append(f"frames.every_n must be >= 1 when sample_fps is 0, got {fp.every_n}")
    if fp.max_per_video < 0:
        problems.append(f"frames.max_per_video must be >= 0, got {fp.max_per_video}")
    if base.workers < 1:
        problems.append(f"base.workers must be >= 1, got {base.workers}")
    if not 0 <= fp.min_mean <= fp.max_mean <= 255:
        problems.append(
            f"need 0 <= frames.min_mean <= frames.max_mean <= 255, got {fp.min_mean}, "
            f"{fp.max_mean}"
        )
    if fp.min_std < 0:
        problems.append(f"frames.min_std must be >= 0, got {fp.min_std}")
    if problems:
        raise FramesError("; ".join(problems))


def _check_raw_dir(raw_dir: Path) -> None:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FramesError(
            f"raw folder {raw_dir} does not exist; fill it with `lusaug phantom --out {raw_dir}` "
            f"or `lusaug import PATH`"
        )
    if not any(p.is_file() for p in raw_dir.rglob("*")):
        raise FramesError(f"raw folder {raw_dir} is empty")


def run(
    paths: FramesPaths, base: BaseParams, import_: ImportParams, frames: FramesParams
) -> dict[str, Any]:
    """Run the frames stage: ``paths.raw`` -> PNGs, manifest, ingest report.

    ``base`` gives the classes, image size and workers, ``import_`` the class prefixes and the
    metadata and crop file names, ``frames`` the sampling, cropping and dropped-frame rules.

    Returns:
        The report (also written to ``paths.report``).

    Raises:
        FramesError: Missing or empty raw folder, unreadable metadata, bad settings, or a class
            of ``base.classes`` with no frame at all (after the report is written; the previous
            frames and manifest are kept).
    """
    _check_settings(base, frames)
    _check_raw_dir(paths.raw)
    tasks, skipped = plan_tasks(paths.raw, base, import_, frames)
    if not tasks:
        reasons = Counter(s["reason"] for s in skipped)
        raise FramesError(f"no usable video or image in {paths.raw} (skipped: {dict(reasons)})")

    settings = FrameSettings.from_params(base, frames)
    rel_prefix = Path(
        os.path.relpath(Path(paths.frames).resolve(), Path(paths.manifest).resolve().parent)
    )
    logger.info("frames: %d files from %s with %d worker(s)", len(tasks), paths.raw, base.workers)

    with atomic_path(paths.frames, is_dir=True) as tmp_frames:
        results = process_files(tasks, settings, tmp_frames, rel_prefix.as_posix(), base.workers)
        report = ingest_report(
            paths.raw,
            paths.frames,
            paths.manifest,
            settings,
            frames.use_crop_json,
            base.classes,
            results,
            skipped,
        )
        error = missing_classes(report, tasks, import_.prefixes, paths.report)
        if error is not None:
            report["error"] = error
            write_json(paths.report, report)
            raise FramesError(error)
        rows = [row for res in results for row in res.rows]
        df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("path", kind="stable")
        with atomic_path(paths.manifest) as tmp_csv:
            df.to_csv(tmp_csv, index=False)
        write_json(paths.report, report)
    log_summary(results, report)
    return report
