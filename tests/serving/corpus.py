"""One file per fault a /predict file can have, with the status and reason it must get.

The same table drives the one-file requests of test_app.py and the batches of test_batch.py:
a fault gets the same status whether its file comes alone or among good ones.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tests.export.helpers import SIZE, png_bytes
from tests.serving.helpers import png_header_only, write_video


def _truncated_png() -> bytes:
    data = png_bytes(np.random.default_rng(1).integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
    return data[: len(data) // 2]


def _truncated_mp4() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        data = write_video(Path(d) / "c.mp4", n_frames=24).read_bytes()
    return data[: len(data) // 3]


def _webp() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(buf, format="WEBP")
    return buf.getvalue()


# case: (status, reason, (file name, bytes, content type))
FILE_FAULTS: dict[str, tuple[int, str, tuple[str, bytes, str]]] = {
    "empty file": (415, "empty_file", ("e.png", b"", "image/png")),
    "non-image bytes": (415, "undecodable", ("x.png", b"this is not an image", "image/png")),
    "a .txt file": (415, "undecodable", ("notes.txt", b"hello, not a scan", "text/plain")),
    "truncated png": (415, "undecodable", ("t.png", _truncated_png(), "image/png")),
    "undecodable video": (415, "undecodable", ("clip.mp4", b"\x00" * 1000, "video/mp4")),
    "truncated video": (415, "undecodable", ("cut.mp4", _truncated_mp4(), "video/mp4")),
    "webp (not a frames type)": (415, "unsupported_type", ("w.webp", _webp(), "image/webp")),
    "unsupported video": (
        415,
        "unsupported_type",
        ("clip.xyz", b"\x00" * 100, "video/x-unknown"),
    ),
    "4096x1 strip": (422, "too_narrow", ("strip.png", png_header_only(4096, 1), "image/png")),
    "20000x20000": (
        413,
        "image_too_large",
        ("huge.png", png_header_only(20000, 20000), "image/png"),
    ),
    "5000 px side": (
        413,
        "image_too_large",
        ("wide.png", png_header_only(5000, 100), "image/png"),
    ),
}
