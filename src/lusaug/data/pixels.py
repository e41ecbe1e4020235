"""Pure pixel conversions shared by the ``frames`` stage and serving: grey, borders, square.

Decoded frames (OpenCV BGR/BGRA/16-bit, any Pillow mode) become 8-bit grey arrays
(:func:`bgr_to_grey`, :func:`pil_to_grey`); :func:`trim_black` finds the box inside the black
border and :func:`to_square` pads to a square and resizes. ``lusaug.serving.preprocess`` calls the
same functions, so a served frame is made exactly as a training frame was.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


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
