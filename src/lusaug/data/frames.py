"""The ``frames`` stage: decode ``data/raw`` videos and images into grey square PNGs + a manifest.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError
from tqdm import tqdm

from lusaug.config import Params
from lusaug.data.ingest import (
    UNCERTAIN_DIR,
    VIDEO_SUFFIXES,
    class_from_filename,
    is_ignorable,
    is_media,
    normalise_patient_id,
    probe_from_path,
)
from lusaug.data.manifest import MANIFEST_COLUMNS, RAW_METADATA_COLUMNS, RAW_METADATA_NAME
from lusaug.errors import LusaugError
from lusaug.utils import atomic_path, write_json

logger = logging.getLogger(__name__)

# Frame rate assumed when a container reports none (0, NaN or absurd): the common video rate.
FALLBACK_FPS = 30.0
MAX_PLAUSIBLE_FPS = 1000.0
# Candidate frames kept in memory per video before the buffer is thinned (a multiple of the cap):
# long clips sampled densely must not hold thousands of full-size frames.
BUFFER_FACTOR = 2
# Tolerance of the fps sampler's time comparison (frames, not seconds).
_EPS = 1e-6


class FramesError(LusaugError, RuntimeError):
    """A clear, user-facing reason why the frames stage cannot produce its outputs."""


class SkipFile(Exception):
    """Raised inside the per-file worker: the file is skipped and ``reason`` is reported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FrameSettings:
    """What a worker needs from the params (small and picklable)."""

    image_size: int
    sample_fps: float
    every_n: int
    max_per_video: int
    auto_crop_black: bool
    black_threshold: int
    min_side: int
    # Pixel-statistics rule (frame_problem); the neutral defaults keep every frame, for settings
    # built by hand. from_params always sets the frames.* values.
    min_mean: float = 0.0
    max_mean: float = 255.0
    min_std: float = 0.0

    @classmethod
    def from_params(cls, params: Params) -> FrameSettings:
        fp = params.frames
        return cls(
            image_size=params.base.image_size,
            sample_fps=fp.sample_fps,
            every_n=fp.every_n,
            max_per_video=fp.max_per_video,
            auto_crop_black=fp.auto_crop_black,
            black_threshold=fp.black_threshold,
            min_side=fp.min_side,
            min_mean=fp.min_mean,
            max_mean=fp.max_mean,
            min_std=fp.min_std,
        )


@dataclass(frozen=True)
class CropSpec:
    """An upstream ``crop.json`` entry: a square box and a frame range.

    Upstream (jannisborn/covid19_ultrasound, ``data/crop_processed_data.py``) stores
    ``[[a, b, c], [start, end]]`` and applies it as ``frame[a:a + c, b:b + c]`` for frames
    ``start .. end - 1``: ``a`` is the TOP row (upstream calls it ``bottom`` because it is the bottom
    of the image as numbers grow downwards), ``b`` the LEFT column and ``c`` the side of the square.
    The ``Resolution`` column of ``dataset_metadata.csv`` agrees: it is ``c x c`` for the cropped
    files. Column offsets run up to 1150 for wide, short paper figures (``Cov_wfumb_case_dez_b``)
    while row offsets stay small, so ``a`` cannot be the column. None of the crop.json keys names a
    file present in ../shared/pocus (those files are already the cropped versions), so the box
    order was read from the upstream script and sizes, not from pixels. For still images upstream
    writes ``[0, 0]``, ``[0, 1]`` or a garbage negative end; the range is then ignored, as it is
    whenever ``end <= start``.
    """

    top: int
    left: int
    size: int
    start: int = 0
    end: int | None = None  # exclusive; None = to the end of the video

    @classmethod
    def parse(cls, value: Any) -> CropSpec:
        box, rng = value[0], (value[1] if len(value) > 1 else [0, 0])
        top, left, size = (round(float(v)) for v in box)
        if size <= 0 or top < 0 or left < 0:
            raise ValueError(f"box {box} needs top, left >= 0 and size > 0")
        start = max(int(float(rng[0])), 0)
        end_f = float(rng[1])
        end = int(end_f) if math.isfinite(end_f) and end_f > start else None
        return cls(top, left, size, start, end)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        out = frame[
            self.top : min(self.top + self.size, h), self.left : min(self.left + self.size, w)
        ]
        if out.size == 0:
            raise SkipFile(
                f"crop.json box top={self.top} left={self.left} size={self.size} lies outside "
                f"the {w}x{h} frame"
            )
        return out


@dataclass(frozen=True)
class FileTask:
    """One media file to decode, with everything the manifest needs."""

    rel: str  # path relative to the raw folder (posix)
    path: str  # absolute path
    kind: str  # "video" | "image"
    label: str
    video_id: str
    patient_id: str
    probe: str
    source: str
    license: str
    crop: CropSpec | None = None
    notes: tuple[str, ...] = ()


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


# --- pixel conversion -------------------------------------------------------------------------


def bgr_to_grey(frame: np.ndarray) -> np.ndarray:
    """OpenCV frame (grey, BGR or BGRA, 8 or 16 bit) -> 8-bit grey."""
    if frame.dtype == np.uint16:
        frame = np.rint(frame / 257.0).astype(np.uint8)
    elif frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def pil_to_grey(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> 8-bit grey array, scaling and compositing correctly.

    - 16-bit grey (``I;16*``): scaled by 255/65535 (Pillow's own ``convert("L")`` clips at 255).
    - 32-bit ``I`` / float ``F``: scaled from the range the values use (0..255, 0..65535 or their
      max), a heuristic as these modes carry no bit depth.
    - Transparency (RGBA, LA, PA, palette with a transparent index): composited over black, as a
      transparent pixel carries no echo.
    - CMYK (incl. Adobe's inverted JPEGs, which Pillow decodes), palette, 1-bit, YCbCr: via RGB.
    Grey uses the ITU-R 601 weights (0.299 R + 0.587 G + 0.114 B), the same as OpenCV's BGR2GRAY
    for video frames.
    """
    mode = im.mode
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float64)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if mode == "F" and hi <= 1.0:
            scale = 255.0
        elif hi <= 255:
            scale = 1.0
        elif hi <= 65535:
            scale = 255.0 / 65535.0
        else:
            scale = 255.0 / hi
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("L"), dtype=np.uint8).copy()
    return np.asarray(im.convert("RGB").convert("L"), dtype=np.uint8).copy()


def trim_black(frames: list[np.ndarray], threshold: int) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right; exclusive ends) of what is not black border.

    A border row/column is one whose maximum over all sampled frames is <= ``threshold``; only
    rows/columns at the edges are trimmed (a dark band inside the image is anatomy). None when
    every pixel of every frame is <= ``threshold``.
    """
    peak = frames[0].copy()
    for f in frames[1:]:
        np.maximum(peak, f, out=peak)
    bright = peak > threshold
    rows = np.flatnonzero(bright.any(axis=1))
    cols = np.flatnonzero(bright.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def to_square(frame: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square with black (centred), then resize to ``size`` x ``size``.

    Padding keeps the whole fan and its aspect ratio (cropping to a square would cut off the
    edges of wide linear-probe clips; stretching would distort pleura and B-line geometry), and
    black is what the border of an ultrasound frame already is. INTER_AREA averages source pixels
    when shrinking, the usual alias-free choice for downscaling speckle; the rare upscale uses
    bilinear interpolation (INTER_AREA degrades to nearest neighbour there).
    """
    h, w = frame.shape[:2]
    side = max(h, w)
    if h != w:
        top, left = (side - h) // 2, (side - w) // 2
        frame = cv2.copyMakeBorder(
            frame, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0
        )
    if side == size:
        return np.ascontiguousarray(frame)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interp)


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


# --- sampling ---------------------------------------------------------------------------------


class _Sampler:
    """Which source frames are candidates: by time (``sample_fps``) or every n-th frame."""

    def __init__(self, fps: float, settings: FrameSettings, start: int) -> None:
        self.fps = fps
        self.rate = settings.sample_fps
        self.every_n = max(settings.every_n, 1)
        self.start = start
        self.next_k = 0  # index of the next sampling instant k / rate

    def want(self, i: int) -> bool:
        j = i - self.start
        if j < 0:
            return False
        if self.rate <= 0:
            return j % self.every_n == 0
        # keep the first frame at or after each instant k / rate (compared as j * rate >= k * fps)
        if j * self.rate + _EPS >= self.next_k * self.fps:
            self.next_k = math.floor(j * self.rate / self.fps + _EPS) + 1
            return True
        return False


class _Buffer:
    """Candidate frames, thinned to every other one whenever it exceeds BUFFER_FACTOR x cap.

    With a cap, the final pick is ``cap`` frames evenly spaced over what is kept, so the selection
    spans the whole clip without holding every candidate of a long video in memory.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[tuple[int, np.ndarray]] = []
        self.stride = 1
        self.seen = 0

    def will_keep(self) -> bool:
        return self.seen % self.stride == 0

    def offer(self, index: int, frame: np.ndarray | None) -> None:
        keep = self.will_keep()
        self.seen += 1
        if not keep or frame is None:
            return
        self.items.append((index, frame))
        if self.cap > 0 and len(self.items) > BUFFER_FACTOR * self.cap:
            self.items = self.items[::2]
            self.stride *= 2

    def pick(self) -> list[tuple[int, np.ndarray]]:
        if self.cap <= 0 or len(self.items) <= self.cap:
            return self.items
        idx = np.linspace(0, len(self.items) - 1, self.cap).round().astype(int)
        return [self.items[i] for i in idx]


def _sample(
    stream: Iterator[Callable[[], np.ndarray | None]],
    fps: float,
    settings: FrameSettings,
    crop: CropSpec | None,
) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Run the sampler over a lazily decoded stream; returns (picked frames, frames decoded)."""
    start = crop.start if crop else 0
    end = crop.end if crop else None
    sampler = _Sampler(fps, settings, start)
    buf = _Buffer(settings.max_per_video)
    decoded = 0
    for i, retrieve in enumerate(stream):
        if end is not None and i >= end:
            break
        decoded += 1
        if sampler.want(i):
            frame = retrieve() if buf.will_keep() else None
            if frame is not None and crop is not None:
                frame = crop.apply(frame)
            buf.offer(i, frame)
    return buf.pick(), decoded


def _cv2_stream(
    cap: cv2.VideoCapture, notes: list[str]
) -> Iterator[Callable[[], np.ndarray | None]]:
    i = 0
    while True:
        try:
            ok = cap.grab()
        except cv2.error as exc:  # some corrupt streams raise instead of returning False
            notes.append(f"decoder error at frame {i}: {str(exc).strip()[:200]}")
            return
        if not ok:
            return

        def retrieve(i: int = i) -> np.ndarray | None:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                notes.append(f"frame {i} could not be retrieved")
                return None
            return bgr_to_grey(frame)

        yield retrieve
        i += 1


def _plausible_fps(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps <= MAX_PLAUSIBLE_FPS


def _decode_video_cv2(
    path: Path, settings: FrameSettings, crop: CropSpec | None, notes: list[str], info: dict
) -> list[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SkipFile("OpenCV cannot open it as a video (not a video, or damaged)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not _plausible_fps(fps):
            notes.append(f"container reports fps={fps}; assumed {FALLBACK_FPS}")
            fps = FALLBACK_FPS
        picked, decoded = _sample(_cv2_stream(cap, notes), fps, settings, crop)
    finally:
        cap.release()
    info.update(decoder="opencv", fps=round(fps, 3), frames_reported=max(reported, 0))
    info["frames_decoded"] = decoded
    expected = reported if crop is None or crop.end is None else min(reported, crop.end)
    if decoded and 0 < decoded < expected:
        notes.append(
            f"decoded {decoded} of the {expected} frames the container reports "
            "(truncated, damaged or miscounted); frames before that point are kept"
        )
    return picked


def _decode_gif_pil(
    path: Path, settings: FrameSettings, crop: CropSpec | None, notes: list[str], info: dict
) -> list[tuple[int, np.ndarray]]:
    durations: list[float] = []
    frames: list[np.ndarray] = []
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                durations.append(float(frame.info.get("duration") or 0.0))
                frames.append(pil_to_grey(frame))
    except (OSError, UnidentifiedImageError, ValueError, EOFError) as exc:
        if not frames:
            raise SkipFile(f"neither OpenCV nor Pillow can decode this GIF ({exc})") from exc
        notes.append(f"Pillow stopped at a damaged GIF frame after {len(frames)}: {exc}")
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / float(np.mean(positive)) if positive else FALLBACK_FPS
    if not _plausible_fps(fps):
        fps = FALLBACK_FPS
    stream = (lambda f=f: f for f in frames)
    picked, decoded = _sample(stream, fps, settings, crop)
    info.update(decoder="pillow", fps=round(fps, 3), frames_reported=len(frames))
    info["frames_decoded"] = decoded
    return picked


def _decode_image(path: Path, crop: CropSpec | None, info: dict) -> list[tuple[int, np.ndarray]]:
    try:
        with Image.open(path) as im:
            im.load()
            info.update(decoder="pillow", mode=im.mode, frames_decoded=1)
            try:
                im = ImageOps.exif_transpose(im)
            except (ValueError, TypeError, KeyError, OSError):
                pass  # a broken EXIF orientation is no reason to lose the picture
            grey = pil_to_grey(im)
    except Image.DecompressionBombError as exc:
        raise SkipFile(f"image too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise SkipFile("Pillow cannot identify it as an image (not an image, or damaged)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise SkipFile(f"cannot decode image: {exc}") from exc
    if crop is not None:
        grey = crop.apply(grey)
    return [(0, grey)]


# --- per-file worker --------------------------------------------------------------------------


def _decode(task: FileTask, settings: FrameSettings, notes: list[str], info: dict):
    path = Path(task.path)
    size = path.stat().st_size
    info["bytes"] = size
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    if task.kind == "image":
        return _decode_image(path, task.crop, info)
    is_gif = path.suffix.lower() == ".gif"
    try:
        picked = _decode_video_cv2(path, settings, task.crop, notes, info)
    except SkipFile:
        if not is_gif:
            raise
        picked = []
    if not picked and is_gif:
        notes.append("OpenCV decoded no frame of this GIF; decoded with Pillow")
        picked = _decode_gif_pil(path, settings, task.crop, notes, info)
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
    res = FileResult(task.rel, task.label, task.video_id, notes=list(task.notes))
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


# --- planning ---------------------------------------------------------------------------------


def _read_raw_metadata(path: Path) -> dict[str, dict[str, str]]:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FramesError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in RAW_METADATA_COLUMNS if c not in df.columns]
    if missing:
        raise FramesError(f"{path} lacks column(s) {missing}; expected {RAW_METADATA_COLUMNS}")
    rows: dict[str, dict[str, str]] = {}
    for rec in df.to_dict("records"):
        rel = Path(str(rec["file"]).strip()).as_posix()
        if rel and rel != ".":
            rows[rel] = {k: str(v).strip() for k, v in rec.items()}
    return rows


def _read_crop_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FramesError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FramesError(f"{path} must map file paths to [[top, left, size], [start, end]]")
    return data


def _video_ids(rels: list[str]) -> dict[str, str]:
    """File stem as video id; stems shared by several files get a short hash of their path."""
    by_stem: dict[str, list[str]] = {}
    for rel in rels:
        by_stem.setdefault(Path(rel).stem.lower(), []).append(rel)
    ids = {}
    for group in by_stem.values():
        for rel in group:
            stem = Path(rel).stem
            if len(group) > 1:
                stem = f"{stem}__{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            ids[rel] = stem
    return ids


def plan_tasks(raw_dir: Path, params: Params) -> tuple[list[FileTask], list[dict[str, str]]]:
    """Scan ``raw_dir``: files to decode (with label/patient/crop) and files skipped up front."""
    classes = params.base.classes
    meta_path = raw_dir / RAW_METADATA_NAME
    meta = _read_raw_metadata(meta_path) if meta_path.is_file() else {}
    crop_name = params.import_.crop_json
    crops: dict[str, Any] = {}
    if params.frames.use_crop_json and crop_name and (raw_dir / crop_name).is_file():
        crops = _read_crop_json(raw_dir / crop_name)
    crops_lower = {k.lower(): v for k, v in crops.items()}
    ignorable = tuple(n for n in (RAW_METADATA_NAME, crop_name, params.import_.metadata_csv) if n)

    skipped: list[dict[str, str]] = []
    media: list[Path] = []
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        rel_parts = path.relative_to(raw_dir).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if is_media(path):
            media.append(path)
        elif not is_ignorable(path, ignorable):
            rel = path.relative_to(raw_dir).as_posix()
            suffix = path.suffix or "(no extension)"
            skipped.append({"file": rel, "reason": f"not a video or image type ({suffix})"})
    present = {p.relative_to(raw_dir).as_posix() for p in media}
    for rel in sorted(set(meta) - present):
        skipped.append({"file": rel, "reason": f"listed in {RAW_METADATA_NAME} but not found"})

    candidates: list[tuple[Path, str, dict[str, str]]] = []
    for path in media:
        rel = path.relative_to(raw_dir).as_posix()
        row = meta.get(rel)
        if row is not None:
            label = row["label"]
            if label not in classes:
                skipped.append(
                    {
                        "file": rel,
                        "reason": f"label {label!r} in {RAW_METADATA_NAME} is not one of "
                        f"base.classes {classes}",
                    }
                )
                continue
            info = {
                "label": label,
                "patient_id": normalise_patient_id(row["patient_id"]),
                "probe": row["probe"] or probe_from_path(Path(rel)),
                "source": row["source"],
                "license": row["license"],
            }
        else:
            if UNCERTAIN_DIR in Path(rel).parts[:-1] and not params.import_.include_uncertain:
                skipped.append({"file": rel, "reason": f"in {UNCERTAIN_DIR}/ (label unsure)"})
                continue
            label = class_from_filename(path.name, params.import_.prefixes)
            if label is None:
                known = ", ".join(sorted(params.import_.prefixes))
                skipped.append({"file": rel, "reason": f"unknown class prefix (known: {known})"})
                continue
            if label not in classes:
                skipped.append({"file": rel, "reason": f"class {label!r} not in base.classes"})
                continue
            info = {
                "label": label,
                "patient_id": "",
                "probe": probe_from_path(Path(rel)),
                "source": "",
                "license": "",
            }
        if not info["patient_id"]:
            info["patient_id"] = f"file:{path.stem}"
        candidates.append((path, rel, info))

    ids = _video_ids([rel for _, rel, _ in candidates])
    tasks = []
    for path, rel, info in candidates:
        notes: list[str] = []
        crop = None
        raw_crop = crops.get(rel, crops_lower.get(rel.lower()))
        if raw_crop is not None:
            try:
                crop = CropSpec.parse(raw_crop)
            except (TypeError, ValueError, IndexError) as exc:
                notes.append(f"ignored malformed crop.json entry {raw_crop!r}: {exc}")
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        tasks.append(
            FileTask(
                rel=rel,
                path=str(path.absolute()),  # not resolve(): DVC may symlink files to its cache
                kind=kind,
                video_id=ids[rel],
                crop=crop,
                notes=tuple(notes),
                **info,
            )
        )
    return tasks, skipped


# --- the stage --------------------------------------------------------------------------------


def _check_settings(params: Params) -> None:
    fp = params.frames
    problems = []
    if params.base.image_size < 1:
        problems.append(f"base.image_size must be >= 1, got {params.base.image_size}")
    if fp.sample_fps < 0:
        problems.append(f"frames.sample_fps must be >= 0, got {fp.sample_fps}")
    if fp.sample_fps == 0 and fp.every_n < 1:
        problems.append(f"frames.every_n must be >= 1 when sample_fps is 0, got {fp.every_n}")
    if fp.max_per_video < 0:
        problems.append(f"frames.max_per_video must be >= 0, got {fp.max_per_video}")
    if params.base.workers < 1:
        problems.append(f"base.workers must be >= 1, got {params.base.workers}")
    if not 0 <= fp.min_mean <= fp.max_mean <= 255:
        problems.append(
            f"need 0 <= frames.min_mean <= frames.max_mean <= 255, got {fp.min_mean}, "
            f"{fp.max_mean}"
        )
    if fp.min_std < 0:
        problems.append(f"frames.min_std must be >= 0, got {fp.min_std}")
    if problems:
        raise FramesError("; ".join(problems))


def _run(
    tasks: list[FileTask], settings: FrameSettings, out_dir: Path, rel_prefix: str, workers: int
) -> list[FileResult]:
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


def extract_frames(
    raw_dir: Path, frames_dir: Path, manifest_path: Path, report_path: Path, params: Params
) -> dict[str, Any]:
    """Run the frames stage: ``raw_dir`` -> PNGs in ``frames_dir``, manifest, ingest report.

    Args:
        raw_dir: ``data/raw`` (videos, images, optional ``metadata.csv`` and ``crop.json``).
        frames_dir: ``data/frames``; replaced as a whole on success.
        manifest_path: ``data/frames.csv`` (paths inside are relative to its folder).
        report_path: ``reports/ingest.json``.
        params: Typed config (``base``, ``import.prefixes``, ``frames``).

    Returns:
        The report (also written to ``report_path``).

    Raises:
        FramesError: Missing or empty raw folder, unreadable metadata, bad settings, or a class
            of ``base.classes`` with no frame at all (after the report is written; the previous
            frames and manifest are kept).
    """
    raw_dir, frames_dir = Path(raw_dir), Path(frames_dir)
    manifest_path, report_path = Path(manifest_path), Path(report_path)
    _check_settings(params)
    if not raw_dir.is_dir():
        raise FramesError(
            f"raw folder {raw_dir} does not exist; fill it with `lusaug phantom --out {raw_dir}` "
            f"or `lusaug import PATH`"
        )
    if not any(p.is_file() for p in raw_dir.rglob("*")):
        raise FramesError(f"raw folder {raw_dir} is empty")
    tasks, skipped = plan_tasks(raw_dir, params)
    if not tasks:
        reasons = Counter(s["reason"] for s in skipped)
        raise FramesError(f"no usable video or image in {raw_dir} (skipped: {dict(reasons)})")

    settings = FrameSettings.from_params(params)
    rel_prefix = Path(os.path.relpath(frames_dir.resolve(), manifest_path.resolve().parent))
    classes = params.base.classes
    logger.info(
        "frames: %d files from %s with %d worker(s)", len(tasks), raw_dir, params.base.workers
    )

    with atomic_path(frames_dir, is_dir=True) as tmp_frames:
        results = _run(tasks, settings, tmp_frames, rel_prefix.as_posix(), params.base.workers)
        rows = [row for res in results for row in res.rows]
        processed = [r for r in results if r.skipped is None]
        skipped += [{"file": r.rel, "reason": r.skipped} for r in results if r.skipped is not None]
        skipped.sort(key=lambda s: s["file"])
        frames_per_class = Counter(r["label"] for r in rows)
        files_per_class = Counter(r.label for r in processed)
        # Frames dropped by the pixel-statistics rule, from files that still gave frames (a file
        # that lost every frame is in `skipped` instead).
        dropped = [
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
        dropped_by_reason: Counter[str] = Counter()
        for d in dropped:
            dropped_by_reason[d["reason"]] += d["count"]
        report = {
            "raw_dir": str(raw_dir),
            "frames_dir": str(frames_dir),
            "manifest": str(manifest_path),
            "settings": {**asdict(settings), "use_crop_json": params.frames.use_crop_json},
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
        }
        empty = [c for c in classes if frames_per_class.get(c, 0) == 0]
        if empty:
            label_of = {t.rel: t.label for t in tasks}
            prefixes = params.import_.prefixes
            why = []
            for c in empty:
                lost = [
                    s
                    for s in skipped
                    if label_of.get(s["file"], class_from_filename(Path(s["file"]).name, prefixes))
                    == c
                ]
                why.append(f"{c!r} ({len(lost)} file(s) of it skipped)")
            msg = (
                f"no frames for class(es) {', '.join(why)}; every class in base.classes needs "
                f"at least one usable file. See {report_path} for the skipped files and reasons"
            )
            report["error"] = msg
            write_json(report_path, report)
            raise FramesError(msg)
        df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("path", kind="stable")
        with atomic_path(manifest_path) as tmp_csv:
            df.to_csv(tmp_csv, index=False)
        write_json(report_path, report)
    for res in processed:
        if res.notes:
            logger.info("%s: %s", res.rel, "; ".join(res.notes))
    for d in dropped:
        logger.info("%s: dropped %d frame(s), %s", d["file"], d["count"], d["reason"])
    logger.info(
        "frames: %d frames from %d files (%d skipped, %d frames dropped): %s",
        len(rows),
        len(processed),
        len(skipped),
        report["totals"]["frames_dropped"],
        dict(report["totals"]["frames_per_class"]),
    )
    return report
