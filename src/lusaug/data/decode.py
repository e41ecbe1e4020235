"""Decoding one raw media file into sampled grey frames (videos, GIFs, still images).

:class:`FrameSettings` is what a worker needs from the params; :class:`CropSpec` is an upstream
``crop.json`` box and frame range. The decoders (:func:`decode_video_cv2`, :func:`decode_gif_pil`,
:func:`decode_image`) keep the sampled frames (``frames.sample_fps`` or every
``frames.every_n``-th, at most ``frames.max_per_video`` spread over the clip; OpenCV streams are
read lazily) and raise :class:`SkipFile` with a reason when a file cannot be used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from lusaug.core.config import BaseParams, FramesParams
from lusaug.data.pixels import bgr_to_grey, pil_to_grey

# Frame rate assumed when a container reports none (0, NaN or absurd): the common video rate.
FALLBACK_FPS = 30.0
MAX_PLAUSIBLE_FPS = 1000.0
# Candidate frames kept in memory per video before the buffer is thinned (a multiple of the cap):
# long clips sampled densely must not hold thousands of full-size frames.
BUFFER_FACTOR = 2
# Tolerance of the fps sampler's time comparison (frames, not seconds).
_EPS = 1e-6


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
    # Pixel-statistics rule (lusaug.data.frames.frame_problem); the neutral defaults keep every
    # frame, for settings built by hand. from_params always sets the frames.* values.
    min_mean: float = 0.0
    max_mean: float = 255.0
    min_std: float = 0.0
    max_pixels: int = 0  # 0 = no cap (settings built by hand); from_params sets frames.max_pixels

    def check_pixels(self, width: int, height: int, what: str) -> None:
        """Refuse a file whose header announces more than ``max_pixels`` per frame, before any
        pixel is decoded (a 20000x20000 PNG of a few kB would otherwise take 400 MB)."""
        if self.max_pixels and width * height > self.max_pixels:
            raise SkipFile(
                f"{what} header announces {width}x{height} = {width * height:,} pixels per frame "
                f"> frames.max_pixels {self.max_pixels:,}: not decoded"
            )

    @classmethod
    def from_params(cls, base: BaseParams, frames: FramesParams) -> FrameSettings:
        return cls(
            image_size=base.image_size,
            sample_fps=frames.sample_fps,
            every_n=frames.every_n,
            max_per_video=frames.max_per_video,
            auto_crop_black=frames.auto_crop_black,
            black_threshold=frames.black_threshold,
            min_side=frames.min_side,
            min_mean=frames.min_mean,
            max_mean=frames.max_mean,
            min_std=frames.min_std,
            max_pixels=frames.max_pixels,
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


def decode_video_cv2(
    path: Path, settings: FrameSettings, crop: CropSpec | None, notes: list[str], info: dict
) -> list[tuple[int, np.ndarray]]:
    """A video's sampled grey frames, decoded by OpenCV; fills ``info`` and ``notes``."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SkipFile("OpenCV cannot open it as a video (not a video, or damaged)")
        settings.check_pixels(
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
            "video",
        )
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


def decode_gif_pil(
    path: Path, settings: FrameSettings, crop: CropSpec | None, notes: list[str], info: dict
) -> list[tuple[int, np.ndarray]]:
    """A GIF's sampled grey frames, decoded by Pillow (used when OpenCV reads none)."""
    durations: list[float] = []
    frames: list[np.ndarray] = []
    try:
        with Image.open(path) as im:
            settings.check_pixels(*im.size, "GIF")
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


def decode_image(
    path: Path, crop: CropSpec | None, info: dict, settings: FrameSettings | None = None
) -> list[tuple[int, np.ndarray]]:
    """A still image as one grey frame (index 0), EXIF-oriented and cropped when asked; refused
    undecoded when its header announces more than ``settings.max_pixels``."""
    try:
        with Image.open(path) as im:  # reads the header only
            if settings is not None:
                settings.check_pixels(*im.size, "image")
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
