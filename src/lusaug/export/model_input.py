"""The one path from image bytes to model input, shared by the pyfunc, the server and the CLI.

The numbers it needs (image size, mean, std, black-border trimming) come from the ONNX model's
metadata (:class:`FrameSpec`), so a served model cannot drift from the one that was trained:

1. header (:func:`read_header`): an image whose sides, pixel count or short side break the
   limits is refused from its header, *before* its pixels are decoded (decompression-bomb
   guard); the header also tells what decoding it will cost (:attr:`ImageHeader.padded_pixels`,
   :attr:`ImageHeader.decode_bytes`), which the server budgets before it decodes anything.
2. decode (:func:`decode_image`): grey uint8 (H, W) with the ``frames`` stage's own converter
   (``pil_to_grey``) and its EXIF orientation rule; truncated or non-image bytes raise
   :class:`BadInput`. Accepted are the still-image types the ``frames`` stage reads
   (``lusaug.data.ingest.IMAGE_SUFFIXES``), whatever the file is called.
3. frame (:func:`prepare_frames`): exactly the ``frames`` stage's geometry, with its functions:
   trim black borders (jointly over a video's sampled frames), pad to a square and resize. A
   frame that already is ``image_size`` square (a stored training frame) passes through
   untouched, so serving a frame from ``data/frames`` reproduces the evaluation exactly.
4. normalise (:func:`normalise`): uint8 -> float32 (N, 1, S, S), ``(x / 255 - mean) / std``.

No request data is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from lusaug.data.ingest import IMAGE_SUFFIXES
from lusaug.data.pixels import pil_to_grey, to_square, trim_black

# Pillow format names of the still-image types the frames stage reads (its list, not a copy).
IMAGE_FORMATS = frozenset(
    fmt for ext, fmt in Image.registered_extensions().items() if ext in IMAGE_SUFFIXES
)
# Working memory of decoding one source pixel, by Pillow mode family (bytes): the decoded
# bands, the RGB/RGBA intermediates of pil_to_grey and the grey result. 16/32-bit modes go
# through float64 arrays in pil_to_grey (three temporaries of 8 bytes).
DECODE_BYTES_8BIT = 8
DECODE_BYTES_ALPHA = 17
DECODE_BYTES_WIDE = 28
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
WIDE_MODES = frozenset({"I", "F"})
# The padded square is held twice at its peak: the padded copy and the resize's source view.
PADDED_BYTES_PER_PIXEL = 2


class BadInput(ValueError):
    """A payload that cannot be turned into frames; the message says why (-> HTTP 4xx)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits, checked from the header before any pixel is decoded."""

    max_side: int = 4096  # longest accepted side (px)
    max_pixels: int = 16_777_216  # most pixels per image (4096 x 4096)
    min_side: int = 1  # shortest accepted side; the server passes frames.min_side


@dataclass(frozen=True)
class FrameSpec:
    """How a decoded grey image becomes a model frame (stored in the ONNX metadata)."""

    image_size: int
    auto_crop_black: bool = False  # frames.auto_crop_black when the model was exported
    black_threshold: int = 0  # frames.black_threshold


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, before its pixels are decoded."""

    name: str
    format: str
    mode: str
    width: int
    height: int

    @property
    def padded_pixels(self) -> int:
        """Pixels of the image once padded to a square (what ``to_square`` allocates)."""
        return max(self.width, self.height) ** 2

    @property
    def decode_bytes(self) -> int:
        """Peak working memory of decoding and framing this image (an upper estimate)."""
        if self.mode.startswith("I;16") or self.mode in WIDE_MODES:
            per_pixel = DECODE_BYTES_WIDE
        elif self.mode in ALPHA_MODES:
            per_pixel = DECODE_BYTES_ALPHA
        else:
            per_pixel = DECODE_BYTES_8BIT
        area = self.width * self.height
        return per_pixel * area + PADDED_BYTES_PER_PIXEL * self.padded_pixels


def open_image(
    source: bytes | IO[bytes], limits: ImageLimits = ImageLimits(), name: str = "image"
) -> tuple[Image.Image, ImageHeader]:
    """Open an image lazily (header only) and check it against ``limits``.

    Args:
        source: the encoded bytes or a seekable binary file.
        limits: per-image limits.
        name: what error messages call the image.

    Raises:
        BadInput: empty (422), not an image (422), unsupported format (415), over the size
            limits (413), or a short side below ``limits.min_side`` (422).
    """
    fh = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if _is_empty(fh):
        raise BadInput(f"{name}: empty file")
    try:
        img = Image.open(fh)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own guard, also from the header
        raise BadInput(f"{name}: image exceeds the pixel limits ({exc})", status=413) from exc
    except Exception as exc:  # Pillow raises UnidentifiedImageError, SyntaxError, ...
        raise BadInput(f"{name}: not a readable image ({type(exc).__name__})") from exc
    if img.format not in IMAGE_FORMATS:
        raise BadInput(
            f"{name}: unsupported image format {img.format!r} (send one of "
            f"{sorted(IMAGE_FORMATS)}; videos and GIFs as video files)",
            status=415,
        )
    w, h = img.size
    header = ImageHeader(name, img.format, img.mode, w, h)
    if w < 1 or h < 1:
        raise BadInput(f"{name}: image has no pixels ({w}x{h})")
    if max(w, h) > limits.max_side or w * h > limits.max_pixels:
        raise BadInput(
            f"{name}: image {w}x{h} exceeds the limits ({limits.max_side} px per side, "
            f"{limits.max_pixels} pixels)",
            status=413,
        )
    if min(w, h) < limits.min_side:
        raise BadInput(
            f"{name}: image {w}x{h} is narrower than {limits.min_side} px "
            "(frames.min_side: the frames stage skips such images too)"
        )
    return img, header


def _is_empty(fh: IO[bytes]) -> bool:
    pos = fh.tell()
    empty = fh.read(1) == b""
    fh.seek(pos)
    return empty


def load_grey(img: Image.Image, name: str = "image") -> np.ndarray:
    """Decode an image opened by :func:`open_image` to grey uint8 (H, W), as ``frames`` does.

    Raises:
        BadInput: corrupt or truncated pixel data.
    """
    try:  # Pillow's bomb check ran at open; our own header limits are stricter
        img.load()  # decodes pixels; a truncated file raises OSError here
    except Exception as exc:
        raise BadInput(f"{name}: corrupt or truncated image ({exc})") from exc
    # Only JPEG/TIFF-style metadata carries an orientation; skip the EXIF parse otherwise
    # (it costs as much as decoding a model-size frame).
    has_exif = "exif" in img.info or img.format == "TIFF"
    if has_exif and img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        try:  # the frames stage applies the EXIF orientation, so serving does too
            img = ImageOps.exif_transpose(img)
        except (ValueError, TypeError, KeyError, OSError):
            pass  # a broken EXIF orientation is no reason to lose the picture
    return pil_to_grey(img)


def decode_image(
    source: bytes | IO[bytes], limits: ImageLimits = ImageLimits(), name: str = "image"
) -> np.ndarray:
    """Image bytes -> grey uint8 (H, W), refusing oversized images from the header alone."""
    img, _ = open_image(source, limits, name)
    return load_grey(img, name)


def prepare_frames(
    greys: Sequence[np.ndarray], spec: FrameSpec, joint: bool = False
) -> np.ndarray:
    """Grey images -> uint8 (N, S, S) with the ``frames`` stage's trim + pad + resize.

    Args:
        greys: grey uint8 images (any size).
        spec: the model's frame geometry.
        joint: one black-border box for all images (the frames of one video, as the ``frames``
            stage trims a clip); otherwise each image is trimmed on its own.

    Raises:
        BadInput: an image (or a whole video) is entirely black.
    """
    size = spec.image_size
    out: list[np.ndarray | None] = [g if g.shape == (size, size) else None for g in greys]
    todo = [i for i, o in enumerate(out) if o is None]
    if todo and spec.auto_crop_black:
        groups = (
            [todo] if joint and len({greys[i].shape for i in todo}) == 1 else [[i] for i in todo]
        )
        for group in groups:
            box = trim_black([greys[i] for i in group], spec.black_threshold)
            if box is None:
                raise BadInput(f"image is entirely black (nothing above {spec.black_threshold})")
            for i in group:
                out[i] = crop_and_square(greys[i], box, size)
    else:
        for i in todo:
            out[i] = to_square(greys[i], size)
    return np.stack(out)


def crop_and_square(
    grey: np.ndarray, box: tuple[int, int, int, int] | None, size: int
) -> np.ndarray:
    """Crop to ``box`` (top, bottom, left, right; None = whole image), pad square, resize."""
    if box is not None:
        t, b, left, r = box
        grey = grey[t:b, left:r]
    return to_square(grey, size)


def normalise(frames: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, S, S) -> float32 (N, 1, S, S) with ``(x / 255 - mean) / std`` (training's)."""
    x = frames.astype(np.float32)[:, None] / 255.0
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)


def decode_base64_image(
    text: str, limits: ImageLimits = ImageLimits(), name: str = "image"
) -> np.ndarray:
    """Base64 (optionally a ``data:`` URL) -> grey uint8 (H, W)."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"{name}: not valid base64 ({exc})") from exc
    return decode_image(raw, limits, name)


def encode_png_base64(grey: np.ndarray) -> str:
    """Grey uint8 (H, W) -> base64 PNG (for pyfunc input examples and requests)."""
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
