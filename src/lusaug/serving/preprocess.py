"""Videos for the server and ``lusaug predict``: streamed, sampled, and shrunk to model size.

Accepted are the media types the ``frames`` stage reads (``lusaug.data.ingest``'s
``VIDEO_SUFFIXES`` and ``IMAGE_SUFFIXES``), by file suffix matched case-insensitively, or by the
part's ``Content-Type`` when the name says nothing. Still images go through
:mod:`lusaug.export.model_input`; this module handles videos (GIFs included, as in ``frames``).

A video is decoded from a temporary file with OpenCV (a GIF OpenCV cannot read falls back to
Pillow, as in ``frames``), one frame at a time. Sampling keeps the first frame at or after each
instant k / ``frames.sample_fps`` (or every n-th frame), up to a frame cap. Each kept frame is
turned into a model frame (trim, pad to square, resize) at once, so memory holds one
full-resolution frame, the running maximum used for the black-border box, and the small model
frames, never a full-resolution stack. With black-border trimming the box spans all sampled
frames (the ``frames`` stage's joint trim), which is known only at the end: a second pass
re-reads the file when the box is not the whole frame. No request data is ever unpickled.
"""

from __future__ import annotations

import math
import mimetypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageSequence

from lusaug.data.ingest import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from lusaug.data.pixels import bgr_to_grey, pil_to_grey, to_square, trim_black
from lusaug.export.model_input import FrameSpec, ImageLimits
from lusaug.serving.faults import Reason, Refused

# Content types of the frames stage's suffixes (from the system's MIME table, not a copy), for
# parts and raw bodies whose name says nothing (e.g. curl's `-F files=@-`).
MIME_SUFFIXES: dict[str, str] = {}
for _suffix in sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES):
    _mime = mimetypes.types_map.get(_suffix)
    if _mime:
        MIME_SUFFIXES.setdefault(_mime, _suffix)
# A container reporting no frame rate (0, NaN or absurd): assume the common rate, as `frames`.
FALLBACK_FPS = 30.0
MAX_PLAUSIBLE_FPS = 1000.0
# Tolerance of the fps sampler's time comparison (in frames), as in the frames stage.
SAMPLING_EPS = 1e-9
# Working memory of one source pixel while streaming (bytes): the decoded BGR frame, its grey
# copy and the running maximum for the border box.
VIDEO_DECODE_BYTES_PER_PIXEL = 5
# The padded square of a frame is held twice at its peak (padded copy + resize source).
PADDED_BYTES_PER_PIXEL = 2


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video are kept (the frames stage's rule and a cap)."""

    sample_fps: float = 3.0  # frames per second kept (0 = every_n)
    every_n: int = 1  # keep every n-th frame when sample_fps is 0
    max_frames: int = 300  # most frames kept from one video


def media_kind(name: str, content_type: str) -> tuple[str, str]:
    """("image" | "video", suffix) of an upload, from its suffix first, then its content type.

    Raises:
        Refused: a video type the frames stage does not read (415).
    """
    suffix = os.path.splitext(name)[1].lower()  # as Path.suffix, without building a Path
    if suffix in VIDEO_SUFFIXES:
        return "video", suffix
    if suffix in IMAGE_SUFFIXES:
        return "image", suffix
    mime = content_type.split(";")[0].strip().lower()
    known = MIME_SUFFIXES.get(mime, "")
    if known in VIDEO_SUFFIXES:
        return "video", known
    if mime.startswith("video/"):
        raise Refused(
            Reason.UNSUPPORTED_TYPE,
            f"{name}: unsupported video type {mime!r} (accepted: {sorted(VIDEO_SUFFIXES)})",
        )
    return "image", known  # the header decides (PNG, JPEG, ... or a clear 4xx)


@dataclass(frozen=True)
class VideoHeader:
    """What a video container says before its frames are decoded."""

    name: str
    width: int
    height: int
    fps: float
    frame_count: int  # as reported; containers lie, so decoding re-checks everything
    decoder: str  # "opencv" | "pillow"

    @property
    def padded_pixels(self) -> int:
        """Pixels of one frame padded to a square."""
        return max(self.width, self.height) ** 2

    def expected_frames(self, sampling: VideoSampling) -> int:
        """Frames sampling will keep, from the reported count (0 when the count is unknown)."""
        if self.frame_count <= 0:
            return 0
        if sampling.sample_fps > 0:
            n = math.ceil(self.frame_count * sampling.sample_fps / self.fps - SAMPLING_EPS)
        else:
            n = math.ceil(self.frame_count / max(sampling.every_n, 1))
        return min(n, sampling.max_frames) if sampling.max_frames > 0 else n

    @property
    def working_bytes(self) -> int:
        """Working memory of streaming one frame into a model frame (upper estimate)."""
        return (
            VIDEO_DECODE_BYTES_PER_PIXEL * self.width * self.height
            + PADDED_BYTES_PER_PIXEL * self.padded_pixels
        )

    def output_bytes(self, sampling: VideoSampling, image_size: int) -> int:
        """Memory of the kept model frames (uint8), at most the frame cap's worth."""
        kept = sampling.max_frames if sampling.max_frames > 0 else self.expected_frames(sampling)
        return kept * image_size * image_size

    def decode_bytes(self, sampling: VideoSampling, image_size: int) -> int:
        """Peak working memory of streaming this video into model frames (upper estimate)."""
        return self.working_bytes + self.output_bytes(sampling, image_size)


def _plausible_fps(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps <= MAX_PLAUSIBLE_FPS


def open_video(path: Path, limits: ImageLimits, name: str) -> VideoHeader:
    """Read a video's header (size, rate, frame count) and check the frame size limits.

    Raises:
        Refused: empty or undecodable (415), frames over the size limits (413) or narrower
            than ``limits.min_side`` (422).
    """
    if path.stat().st_size == 0:
        raise Refused(Reason.EMPTY_FILE, f"{name}: empty file")
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            header = VideoHeader(
                name,
                int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
                fps if _plausible_fps(fps) else FALLBACK_FPS,
                max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                "opencv",
            )
        else:
            header = None
    finally:
        cap.release()
    if header is None or header.width < 1:
        header = _open_gif_pillow(path, name) if path.suffix.lower() == ".gif" else None
    if header is None:
        raise Refused(
            Reason.UNDECODABLE, f"{name}: OpenCV cannot decode this video ({path.suffix})"
        )
    w, h = header.width, header.height
    if max(w, h) > limits.max_side or w * h > limits.max_pixels:
        raise Refused(
            Reason.IMAGE_TOO_LARGE,
            f"{name}: video frames {w}x{h} exceed the image limits ({limits.max_side} px per "
            f"side, {limits.max_pixels} pixels)",
        )
    if min(w, h) < limits.min_side:
        raise Refused(
            Reason.TOO_NARROW,
            f"{name}: video frames {w}x{h} are narrower than {limits.min_side} px",
        )
    return header


def _open_gif_pillow(path: Path, name: str) -> VideoHeader | None:
    try:
        with Image.open(path) as im:
            w, h = im.size
            duration = float(im.info.get("duration") or 0.0)
    except Exception:  # noqa: BLE001 - not a GIF Pillow can read either
        return None
    fps = 1000.0 / duration if duration > 0 else FALLBACK_FPS
    return VideoHeader(name, w, h, fps if _plausible_fps(fps) else FALLBACK_FPS, 0, "pillow")


def decode_video(
    path: Path,
    header: VideoHeader,
    sampling: VideoSampling,
    spec: FrameSpec,
    max_pixels: int = 0,
) -> tuple[np.ndarray, list[int]]:
    """Stream a video into its sampled model frames, uint8 (N, S, S), and each one's index in
    the source (its time is index / ``header.fps``, the rate sampling used).

    Args:
        path: the video file.
        header: what :func:`open_video` read from it.
        sampling: which frames to keep.
        spec: the model's frame geometry (size, black-border trimming).
        max_pixels: the request's budget of kept frames' padded pixels (0 = none); checked as
            frames come, since the reported frame count may lie.

    Raises:
        Refused: no decodable frame (415), over ``max_pixels`` (413), entirely black (422).
    """
    size = spec.image_size
    trim = spec.auto_crop_black and (header.height, header.width) != (size, size)
    peak: np.ndarray | None = None
    frames: list[np.ndarray] = []
    indices: list[int] = []
    for i, grey in _sampled(path, header, sampling, max_pixels):
        if trim:
            peak = grey.copy() if peak is None else np.maximum(peak, grey, out=peak)
        frames.append(to_square(grey, size))
        indices.append(i)
    if not frames:
        raise Refused(Reason.UNDECODABLE, f"{header.name}: no decodable frames (corrupt video?)")
    if not trim:
        return np.stack(frames), indices
    box = trim_black([peak], spec.black_threshold)
    if box is None:
        raise Refused(
            Reason.ALL_BLACK,
            f"{header.name}: every sampled frame is black (nothing above {spec.black_threshold})",
        )
    if box == (0, header.height, 0, header.width):
        return np.stack(frames), indices  # nothing to trim: the first pass made the frames
    t, b, left, r = box
    second = [to_square(g[t:b, left:r], size) for _, g in _sampled(path, header, sampling, 0)]
    return np.stack(second[: len(frames)]), indices


def _sampled(
    path: Path, header: VideoHeader, sampling: VideoSampling, max_pixels: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(source index, grey frame) of each sampled frame, one at a time, within the budget."""
    stream = _cv2_frames(path) if header.decoder == "opencv" else _pillow_frames(path)
    rate = sampling.sample_fps if sampling.sample_fps > 0 else 0.0
    every = max(sampling.every_n, 1)
    kept, next_k, spent = 0, 0, 0
    for i, retrieve in enumerate(stream):
        if 0 < sampling.max_frames <= kept:
            break
        if rate:  # the first frame at or after each instant k / rate (i * rate >= k * fps)
            keep = i * rate + SAMPLING_EPS >= next_k * header.fps
            if keep:
                next_k = math.floor(i * rate / header.fps + SAMPLING_EPS) + 1
        else:
            keep = i % every == 0
        if not keep:
            continue
        grey = retrieve()
        if grey is None or grey.shape != (header.height, header.width):
            continue  # a damaged frame or a size change mid-stream: the usual frames only
        spent += header.padded_pixels
        if max_pixels and spent > max_pixels:
            raise Refused(
                Reason.REQUEST_PIXELS,
                f"{header.name}: its sampled frames exceed the request's budget of "
                f"{max_pixels} decoded pixels (after padding to square)",
            )
        kept += 1
        yield i, grey


def _cv2_frames(path: Path) -> Iterator[Callable[[], np.ndarray | None]]:
    """grab() every frame (cheap), retrieve() only the sampled ones."""
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            try:
                if not cap.grab():
                    return
            except cv2.error:  # some corrupt streams raise instead of returning False
                return

            def retrieve() -> np.ndarray | None:
                ok, frame = cap.retrieve()
                return bgr_to_grey(frame) if ok and frame is not None else None

            yield retrieve
    finally:
        cap.release()


def _pillow_frames(path: Path) -> Iterator[Callable[[], np.ndarray | None]]:
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                yield lambda frame=frame: pil_to_grey(frame)
    except (OSError, ValueError, EOFError):
        return  # a damaged GIF frame ends the stream; the frames before it count
