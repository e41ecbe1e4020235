"""Figures of the write-up: copied next to it (plots/ is DVC-cached, not in git), shrunk when big.

A copy is re-encoded losslessly when that is smaller, and downscaled until it is at most
``FIGURE_MAX_BYTES``: the docs live in git, so the repository stays small.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from lusaug.core.markdown import Doc
from lusaug.core.utils import atomic_path

logger = logging.getLogger(__name__)

# A copied PNG larger than this is downscaled (docs live in git; keep the repository small).
FIGURE_MAX_BYTES = 400_000
# Each downscaling pass shrinks the sides by this factor until the PNG fits.
DOWNSCALE_STEP = 0.8
SHARED_MODE = 0o644  # mkstemp's 0600 is wrong for files meant to be shared


def _lossless_compact(image: Any) -> Any:
    """Drop an all-opaque alpha channel and collapse grey RGB to L (matplotlib saves RGBA)."""
    from PIL import ImageChops

    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode == "RGB":
        r, g, b = image.split()
        if ImageChops.difference(r, g).getbbox() is None and (
            ImageChops.difference(g, b).getbbox() is None
        ):
            image = image.convert("L")
    return image


def copy_figure(src: Path, dst: Path, max_bytes: int = FIGURE_MAX_BYTES) -> Path | None:
    """Copy a PNG atomically, re-encoded losslessly when smaller and downscaled until it is at
    most ``max_bytes``; None when ``src`` does not exist."""
    if not src.is_file():
        return None
    from PIL import Image, UnidentifiedImageError

    with atomic_path(dst) as tmp:
        try:
            with Image.open(src) as im:
                image = _lossless_compact(im.copy())  # in memory: the file closes here
        except (OSError, UnidentifiedImageError):
            logger.warning("report: %s is not a readable image; copied as it is", src)
            image = None
        if image is not None:
            image.save(tmp, format="PNG", optimize=True)
        if image is None or tmp.stat().st_size >= src.stat().st_size:
            shutil.copyfile(src, tmp)
        if image is not None and tmp.stat().st_size > max_bytes:
            scale = math.sqrt(max_bytes / tmp.stat().st_size)
            while True:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image.resize(size, Image.Resampling.LANCZOS).save(tmp, format="PNG", optimize=True)
                if tmp.stat().st_size <= max_bytes or min(size) <= 1:
                    break
                scale *= DOWNSCALE_STEP
            logger.info("report: %s downscaled to %s px", src, size)
        tmp.chmod(SHARED_MODE)
    return dst


class Figures:
    """Copies figures into the figures folder; the document links them relative to itself."""

    def __init__(self, repo: Path, figures_dir: Path) -> None:
        self.repo = repo
        self.dir = figures_dir
        self.copied: list[Path] = []
        self.missing: list[Path] = []

    def shown(self, path: Path) -> str:
        """``path`` as the text names it: relative to the run's repository when inside it."""
        if path.is_relative_to(self.repo):
            return path.relative_to(self.repo).as_posix()
        return str(path)

    def add(self, doc: Doc, src: Path, rel_dst: str, caption: str) -> bool:
        """Copy ``src`` to ``figures_dir/rel_dst`` and show it with its caption; a sentence
        naming the missing file when it is absent. True when copied."""
        dst = copy_figure(src, self.dir / rel_dst)
        if dst is None:
            self.missing.append(src)
            doc.p(f"_Figure not available: {self.shown(src)} is missing._")
            return False
        self.copied.append(dst)
        doc.image(dst, caption)
        doc.p(f"*{caption}.*")
        return True
