"""Decode ``data/raw`` videos and images into grey square PNGs: the ``frames`` stage's worker.

For each media file: decode (OpenCV for videos, GIFs too with a Pillow fallback; Pillow for still
images), sample frames (``frames.sample_fps`` or every ``frames.every_n``-th, at most
``frames.max_per_video`` spread over the clip), apply the upstream ``crop.json`` box and frame
range when asked, trim black borders, convert to 8-bit grey, pad to a square and resize to
``base.image_size``. A resulting frame that is blank, near-black or saturated (grey-level std
below ``frames.min_std``, mean outside ``frames.min_mean`` .. ``frames.max_mean``: fade-ins, a
lifted probe) is dropped: it carries no lung signal, and ``validate`` re-checks every PNG against
the same keys. PNGs go to ``<frames_dir>/<label>/<video_id>_<idx:05d>.png`` (idx = frame index in
the source video), one manifest row per PNG (``MANIFEST_COLUMNS``), and ``reports/ingest.json``
lists every processed file with its frame counts, the dropped frames (count per file and reason)
and every skipped file with the reason. All three outputs are written to temporary paths and
renamed, so a failing run leaves the previous outputs as they were.

This module holds the per-file worker and runs it over every file (:func:`process_files`); the
stage (:mod:`lusaug.stages.frames`) composes it with the scan of ``data/raw``
(:mod:`lusaug.data.frames_plan`) and the ingest report (:mod:`lusaug.data.frames_report`);
decoding and sampling are in :mod:`lusaug.data.decode`, the pixel conversions in
:mod:`lusaug.data.pixels`.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lusaug.data.decode import (
    FrameSettings,
    SkipFile,
    decode_gif_pil,
    decode_image,
    decode_video_cv2,
)
from lusaug.data.frames_plan import FileTask, FramesError
from lusaug.data.pixels import to_square, trim_black

logger = logging.getLogger(__name__)


# --- per-file worker --------------------------------------------------------------------------


@dataclass
class FileResult:
    """What a worker returns: manifest rows (PNGs already written) or a skip reason."""

    rel: str
    label: str
    video_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, list[int]] = field(default_factory=dict)  # reason -> frame indices
    ambiguous: str | None = None  # why the file name also reads as another class


def frame_problem(img: np.ndarray, settings: FrameSettings) -> str | None:
    """Why a stored frame is unusable (blank, near-black, saturated), or None when it is fine.

    Judged on the final square PNG, exactly what ``validate`` measures, with the same keys
    (``frames.min_std``, ``frames.min_mean``, ``frames.max_mean``), so a frame this stage keeps
    passes validation's pixel-statistics expectations. The reason names the rule, not the values,
    so the report can count frames per reason.
    """
    std, mean = float(img.std()), float(img.mean())
    if std < settings.min_std:
        return f"blank: grey-level std < frames.min_std={settings.min_std:g}"
    if mean < settings.min_mean:
        return f"near-black: mean grey level < frames.min_mean={settings.min_mean:g}"
    if mean > settings.max_mean:
        return f"saturated: mean grey level > frames.max_mean={settings.max_mean:g}"
    return None


def _decode(task: FileTask, settings: FrameSettings, notes: list[str], info: dict):
    path = Path(task.path)
    size = path.stat().st_size
    info["bytes"] = size
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    if task.kind == "image":
        return decode_image(path, task.crop, info, settings)
    is_gif = path.suffix.lower() == ".gif"
    try:
        picked = decode_video_cv2(path, settings, task.crop, notes, info)
    except SkipFile:
        if not is_gif:
            raise
        picked = []
    if not picked and is_gif:
        notes.append("OpenCV decoded no frame of this GIF; decoded with Pillow")
        picked = decode_gif_pil(path, settings, task.crop, notes, info)
    if not picked:
        raise SkipFile(f"no decodable frame ({info.get('frames_decoded', 0)} frames read)")
    return picked


def process_file(
    task: FileTask, settings: FrameSettings, out_dir: str, rel_prefix: str
) -> FileResult:
    """Decode one file and write its PNGs under ``out_dir/<label>/``; never raises for bad input.

    Args:
        task: The file and its metadata.
        settings: Sampling/cropping/resizing settings.
        out_dir: Folder being built (renamed to the frames folder at the end).
        rel_prefix: Manifest path prefix of that folder, relative to the manifest CSV.
    """
    res = FileResult(
        task.rel, task.label, task.video_id, notes=list(task.notes), ambiguous=task.ambiguous
    )
    try:
        picked = _decode(task, settings, res.notes, res.info)
        shapes = Counter(f.shape for _, f in picked)
        if len(shapes) > 1:  # a stream that changes resolution midway: keep the usual size
            usual = shapes.most_common(1)[0][0]
            res.notes.append(f"frame size changes within the video; kept the {usual} frames")
            picked = [(i, f) for i, f in picked if f.shape == usual]
        frames = [f for _, f in picked]
        if settings.auto_crop_black:
            box = trim_black(frames, settings.black_threshold)
            if box is None:
                raise SkipFile(
                    f"every sampled frame is black (no pixel above "
                    f"frames.black_threshold={settings.black_threshold})"
                )
            t, b, l, r = box
            if (b - t, r - l) != frames[0].shape[:2]:
                res.info["black_border_trim"] = [
                    t,
                    frames[0].shape[0] - b,
                    l,
                    frames[0].shape[1] - r,
                ]
            frames = [f[t:b, l:r] for f in frames]
        h, w = frames[0].shape[:2]
        res.info["cropped_size"] = [w, h]
        if min(h, w) < settings.min_side:
            raise SkipFile(
                f"too small after cropping: {w}x{h} px < frames.min_side={settings.min_side}"
            )
        kept: list[tuple[int, np.ndarray]] = []
        for (idx, _), frame in zip(picked, frames, strict=True):
            img = to_square(frame, settings.image_size)
            problem = frame_problem(img, settings)
            if problem is None:
                kept.append((idx, img))
            else:
                res.dropped.setdefault(problem, []).append(idx)
        if not kept:
            reasons = "; ".join(f"{len(v)} {k}" for k, v in res.dropped.items())
            raise SkipFile(f"every sampled frame was dropped ({reasons})")
        label_dir = Path(out_dir) / task.label
        label_dir.mkdir(parents=True, exist_ok=True)
        for idx, img in kept:
            name = f"{task.video_id}_{idx:05d}.png"
            if not cv2.imwrite(str(label_dir / name), img):
                raise OSError(f"could not write {label_dir / name}")
            res.rows.append(
                {
                    "path": f"{rel_prefix}/{task.label}/{name}",
                    "label": task.label,
                    "video_id": task.video_id,
                    "patient_id": task.patient_id,
                    "probe": task.probe,
                    "source": task.source,
                    "license": task.license,
                    "width": int(img.shape[1]),
                    "height": int(img.shape[0]),
                    "sha1": hashlib.sha1(img.tobytes()).hexdigest(),
                }
            )
        res.info["frame_indices"] = [idx for idx, _ in kept]
    except SkipFile as exc:
        res.skipped = exc.reason
        res.rows = []
        res.dropped = {}
    except MemoryError:
        res.skipped = "out of memory while decoding (lower frames.max_per_video)"
        res.rows = []
    except Exception as exc:  # a bad file must not stop the stage; the report says what happened
        logger.warning("unexpected error on %s", task.rel, exc_info=True)
        res.skipped = f"unexpected error: {type(exc).__name__}: {exc}"
        res.rows = []
    return res


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def _run_task(args: tuple[FileTask, FrameSettings, str, str]) -> FileResult:
    return process_file(*args)


def process_files(
    tasks: list[FileTask], settings: FrameSettings, out_dir: Path, rel_prefix: str, workers: int
) -> list[FileResult]:
    """Run :func:`process_file` over every task (``workers`` processes, a progress bar); the
    results sorted by file."""
    # Biggest files first so that the last one to finish is short (better balance on 2 cores).
    order = sorted(tasks, key=lambda t: -os.path.getsize(t.path))
    jobs = [(t, settings, str(out_dir), rel_prefix) for t in order]
    bar = tqdm(total=len(jobs), desc="frames", unit="file")
    results: list[FileResult] = []
    try:
        if workers <= 1 or len(jobs) <= 1:
            _init_worker()
            for job in jobs:
                results.append(_run_task(job))
                bar.update()
        else:
            # spawn: no fork of a parent that may hold threads (tqdm, OpenCV) or big imports.
            # ProcessPoolExecutor (not Pool) so that a worker killed by the OS fails the stage
            # instead of hanging it.
            ctx = multiprocessing.get_context("spawn")
            n = min(workers, len(jobs))
            pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker)
            try:
                futures = [pool.submit(_run_task, job) for job in jobs]
                for fut in as_completed(futures):
                    results.append(fut.result())
                    bar.update()
            except BrokenProcessPool as exc:
                raise FramesError(
                    f"a frames worker process died ({exc}); out of memory? try "
                    "base.workers=1 or a smaller frames.max_per_video"
                ) from exc
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return sorted(results, key=lambda r: r.rel)
