"""The one preprocessing path from image/video bytes to model input, shared by everything.

`lusaug serve`, `lusaug predict` and the MLflow pyfunc all call these functions, and the numbers
they need (image size, mean, std, black-border trimming) come from the ONNX model's metadata
(:class:`FrameSpec`), so a served model cannot drift from the one that was trained:

1. decode: PNG/JPEG bytes -> grey uint8 (H, W) with the ``frames`` stage's own converter
   (:func:`lusaug.data.frames.pil_to_grey`). The header is read first and an image whose sides or
   pixel count exceed the limits is refused *before* its pixels are decoded (decompression-bomb
   guard); truncated or non-image bytes raise :class:`BadInput`.
2. frame (:func:`prepare_frames`): exactly the ``frames`` stage's geometry, with its functions:
   trim black borders (``frames.auto_crop_black``, jointly over a video's sampled frames), pad to
   a square and resize (:func:`lusaug.data.frames.to_square`). A frame that already is
   ``image_size`` square (a stored training/test frame) passes through untouched, so serving a
   frame from ``data/frames`` reproduces the evaluation exactly.
3. normalise: uint8 -> float32 (N, 1, S, S), ``(x / 255 - mean) / std``, as in training.

Videos are written to a temporary file, decoded with OpenCV and sampled at ``frames.sample_fps``
(or every n-th frame; the first frame at or after each sampling instant, like the ``frames``
stage), up to a frame cap. No request data is ever unpickled.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lusaug.data.pixels import bgr_to_grey, pil_to_grey, to_square, trim_black

IMAGE_FORMATS = ("PNG", "JPEG")


class BadInput(ValueError):
    """A request payload that cannot be turned into frames; the message says why (-> HTTP 4xx)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    max_side: int = 4096  # longest accepted side (px)
    max_pixels: int = 16_777_216  # most pixels per image


@dataclass(frozen=True)
class FrameSpec:
    """How a decoded grey image becomes a model frame (stored in the ONNX metadata)."""

    image_size: int
    auto_crop_black: bool = False  # frames.auto_crop_black when the model was exported
    black_threshold: int = 0  # frames.black_threshold


@dataclass(frozen=True)
class VideoSampling:
    sample_fps: float = 3.0  # frames per second kept (0 = every_n)
    every_n: int = 1  # keep every n-th frame when sample_fps is 0
    max_frames: int = 300  # most frames kept from one video


def decode_image(
    data: bytes, limits: ImageLimits = ImageLimits(), name: str = "image"
) -> np.ndarray:
    """PNG/JPEG bytes -> grey uint8 (H, W), refusing oversized images from the header alone."""
    if not data:
        raise BadInput(f"{name}: empty file")
    try:
        img = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Image.DecompressionBombError as exc:  # PIL's own guard, also from the header
        raise BadInput(f"{name}: image exceeds the pixel limits ({exc})", status=413) from exc
    except Exception as exc:  # PIL raises UnidentifiedImageError, SyntaxError, ...
        raise BadInput(f"{name}: not a PNG or JPEG image ({type(exc).__name__})") from exc
    if img.format not in IMAGE_FORMATS:
        raise BadInput(f"{name}: unsupported image format {img.format!r} (send PNG or JPEG)", 415)
    w, h = img.size
    if w < 1 or h < 1:
        raise BadInput(f"{name}: image has no pixels ({w}x{h})")
    if max(w, h) > limits.max_side or w * h > limits.max_pixels:
        raise BadInput(
            f"{name}: image {w}x{h} exceeds the limits ({limits.max_side} px per side, "
            f"{limits.max_pixels} pixels)",
            status=413,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()  # decodes pixels; a truncated file raises OSError here
    except Exception as exc:
        raise BadInput(f"{name}: corrupt or truncated image ({exc})") from exc
    return pil_to_grey(img)


def prepare_frames(
    greys: Sequence[np.ndarray], spec: FrameSpec, joint: bool = False
) -> np.ndarray:
    """Grey images -> uint8 (N, S, S) with the ``frames`` stage's trim + pad + resize.

    Args:
        greys: grey uint8 images (any size).
        spec: the model's frame geometry.
        joint: one black-border box for all images (the frames of one video, as the ``frames``
            stage trims a clip); otherwise each image is trimmed on its own.
    """
    size = spec.image_size
    out: list[np.ndarray | None] = [g if g.shape == (size, size) else None for g in greys]
    todo = [i for i, o in enumerate(out) if o is None]
    if todo and spec.auto_crop_black:
        groups = (
            [todo] if joint and len({greys[i].shape for i in todo}) == 1 else [[i] for i in todo]
        )
        cropped: dict[int, np.ndarray] = {}
        for group in groups:
            box = trim_black([greys[i] for i in group], spec.black_threshold)
            if box is None:
                raise BadInput(f"image is entirely black (nothing above {spec.black_threshold})")
            t, b, left, r = box
            cropped.update({i: greys[i][t:b, left:r] for i in group})
        for i in todo:
            out[i] = to_square(cropped[i], size)
    else:
        for i in todo:
            out[i] = to_square(greys[i], size)
    return np.stack(out)


def normalise(frames: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, S, S) -> float32 (N, 1, S, S) with ``(x / 255 - mean) / std`` (training's)."""
    x = frames.astype(np.float32)[:, None] / 255.0
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)


def decode_base64_image(
    text: str, limits: ImageLimits = ImageLimits(), name: str = "image"
) -> np.ndarray:
    """Base64 (optionally a ``data:`` URL) -> grey uint8 (H, W)."""
    if "," in text[:64] and text.startswith("data:"):
        text = text.split(",", 1)[1]
    try:
        raw = base64.b64decode(text, validate=True)
    except Exception as exc:
        raise BadInput(f"{name}: not valid base64 ({exc})") from exc
    return decode_image(raw, limits, name)


def encode_png_base64(grey: np.ndarray) -> str:
    """Grey uint8 (H, W) -> base64 PNG (for pyfunc input examples and requests)."""
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_video(
    data: bytes,
    suffix: str,
    sampling: VideoSampling = VideoSampling(),
    limits: ImageLimits = ImageLimits(),
    name: str = "video",
) -> np.ndarray:
    """Video bytes -> sampled grey uint8 frames (N, H, W), decoded by OpenCV from a temp file."""
    import cv2

    if not data:
        raise BadInput(f"{name}: empty file")
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(tmp)
        try:
            if not cap.isOpened():
                raise BadInput(f"{name}: OpenCV cannot decode this video ({suffix})", status=415)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            if max(w, h) > limits.max_side or w * h > limits.max_pixels:
                raise BadInput(f"{name}: video frames {w}x{h} exceed the image limits", status=413)
            frames = _read_sampled(cap, fps, sampling)
        finally:
            cap.release()
    finally:
        os.unlink(tmp)
    if not frames:
        raise BadInput(f"{name}: no decodable frames (unsupported or corrupt video)", status=415)
    return np.stack(frames)


def _read_sampled(cap, fps: float, sampling: VideoSampling) -> list[np.ndarray]:
    """Read a capture sequentially (frame counts in containers lie) and keep the sampled frames.

    By time: the first frame at or after each instant k / sample_fps, the ``frames`` stage's rule
    (compared as ``i * rate >= k * fps``); without a usable fps, every n-th frame.
    """
    rate = sampling.sample_fps if sampling.sample_fps > 0 and fps > 0 else 0.0
    every = max(sampling.every_n, 1)
    frames: list[np.ndarray] = []
    next_k = 0
    i = 0
    while sampling.max_frames <= 0 or len(frames) < sampling.max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        if rate:
            keep = i * rate + 1e-9 >= next_k * fps
            if keep:
                next_k = math.floor(i * rate / fps + 1e-9) + 1
        else:
            keep = i % every == 0
        if keep:
            frames.append(np.ascontiguousarray(bgr_to_grey(bgr)))
        i += 1
    return frames


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
