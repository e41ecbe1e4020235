"""The ``frames`` stage's report (``reports/ingest.json``), built from the workers' results.

:func:`ingest_report` lists the settings, the totals, every processed file, every dropped frame
and every skipped file; :func:`missing_classes` says why a class ended with no frame (the stage
then fails after writing the report); :func:`log_summary` logs what the report holds.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lusaug.data.decode import FrameSettings
from lusaug.data.frames_plan import FileTask
from lusaug.data.ingest import class_from_filename

if TYPE_CHECKING:
    from lusaug.data.frames import FileResult

logger = logging.getLogger(__name__)


def _dropped_frames(processed: list[FileResult]) -> list[dict[str, Any]]:
    """Frames dropped by the pixel-statistics rule, from files that still gave frames (a file
    that lost every frame is in ``skipped`` instead)."""
    return [
        {
            "file": r.rel,
            "video_id": r.video_id,
            "reason": reason,
            "count": len(idx),
            "frame_indices": idx,
        }
        for r in processed
        for reason, idx in r.dropped.items()
    ]


def ingest_report(
    raw_dir: Path,
    frames_dir: Path,
    manifest_path: Path,
    settings: FrameSettings,
    use_crop_json: bool,
    classes: list[str],
    results: list[FileResult],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """``reports/ingest.json``: settings, totals, every processed file, every dropped frame and
    every skipped file (those skipped while planning and those the workers gave up on)."""
    rows = [row for res in results for row in res.rows]
    processed = [r for r in results if r.skipped is None]
    failed = [{"file": r.rel, "reason": r.skipped} for r in results if r.skipped is not None]
    skipped = sorted(skipped + failed, key=lambda s: s["file"])
    frames_per_class = Counter(r["label"] for r in rows)
    files_per_class = Counter(r.label for r in processed)
    dropped = _dropped_frames(processed)
    dropped_by_reason: Counter[str] = Counter()
    for d in dropped:
        dropped_by_reason[d["reason"]] += d["count"]
    return {
        "raw_dir": str(raw_dir),
        "frames_dir": str(frames_dir),
        "manifest": str(manifest_path),
        "settings": {**asdict(settings), "use_crop_json": use_crop_json},
        "totals": {
            "files_processed": len(processed),
            "files_skipped": len(skipped),
            "frames": len(rows),
            "frames_dropped": sum(dropped_by_reason.values()),
            "frames_dropped_by_reason": dict(sorted(dropped_by_reason.items())),
            "frames_per_class": {c: frames_per_class.get(c, 0) for c in classes},
            "files_per_class": {c: files_per_class.get(c, 0) for c in classes},
            "patients": len({r["patient_id"] for r in rows}),
        },
        "files": [
            {
                "file": r.rel,
                "label": r.label,
                "video_id": r.video_id,
                "frames": len(r.rows),
                "frames_dropped": {k: len(v) for k, v in r.dropped.items()},
                **r.info,
                "notes": r.notes,
            }
            for r in processed
        ],
        "dropped_frames": dropped,
        "skipped": skipped,
        # names a shorter class prefix also matches: the label may not be what the name meant
        "ambiguous_names": [
            {"file": r.rel, "label": r.label, "reason": r.ambiguous}
            for r in results
            if r.ambiguous
        ],
    }


def missing_classes(
    report: dict[str, Any], tasks: list[FileTask], prefixes: dict[str, str], report_path: Path
) -> str | None:
    """Why a class of ``base.classes`` has no frame at all (None when every class has some)."""
    per_class = report["totals"]["frames_per_class"]
    empty = [c for c, n in per_class.items() if n == 0]
    if not empty:
        return None
    label_of = {t.rel: t.label for t in tasks}
    why = []
    for c in empty:
        lost = [
            s
            for s in report["skipped"]
            if label_of.get(s["file"], class_from_filename(Path(s["file"]).name, prefixes)) == c
        ]
        why.append(f"{c!r} ({len(lost)} file(s) of it skipped)")
    return (
        f"no frames for class(es) {', '.join(why)}; every class in base.classes needs "
        f"at least one usable file. See {report_path} for the skipped files and reasons"
    )


def log_summary(results: list[FileResult], report: dict[str, Any]) -> None:
    """The per-file notes, the dropped frames and the totals, to the log."""
    for res in results:
        if res.skipped is None and res.notes:
            logger.info("%s: %s", res.rel, "; ".join(res.notes))
    for d in report["dropped_frames"]:
        logger.info("%s: dropped %d frame(s), %s", d["file"], d["count"], d["reason"])
    totals = report["totals"]
    logger.info(
        "frames: %d frames from %d files (%d skipped, %d frames dropped): %s",
        totals["frames"],
        totals["files_processed"],
        totals["files_skipped"],
        totals["frames_dropped"],
        dict(totals["frames_per_class"]),
    )
