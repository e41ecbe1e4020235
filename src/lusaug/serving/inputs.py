"""From uploaded files to model input, in two steps: inspect (headers only), then decode.

Each file of a request stands on its own: a file that cannot be read, breaks a per-file limit
or turns out black gets its own :class:`~lusaug.serving.faults.Refused` (kept on its
:class:`Entry`) and the others go on. What the request as a whole may cost is checked over the
files that passed: :func:`inspect` sums the decoded pixels (each image or kept video frame
padded to a square, against ``max_request_pixels``) and the peak working memory (what the
server takes from its in-flight budget before decoding) from the headers, and refuses the
whole request when it is over. :func:`decode` then turns the entries into model frames one file
at a time, shrinking each to model size at once, so the peak is one file's decode plus the
small model frames made so far. ``lusaug predict`` runs the same two steps per file.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from lusaug.export.model_input import (
    BadInput,
    FrameSpec,
    ImageHeader,
    ImageLimits,
    load_grey,
    open_image,
    prepare_frames,
)
from lusaug.serving.faults import Reason, Refused, as_refused
from lusaug.serving.preprocess import (
    VideoHeader,
    VideoSampling,
    decode_video,
    media_kind,
    open_video,
)


@dataclass
class Entry:
    """One uploaded file on its way to model frames, or the reason it was refused."""

    name: str
    image: Image.Image | None = None
    header: ImageHeader | None = None
    video: VideoHeader | None = None
    video_path: Path | None = None
    error: Refused | None = None
    frames: np.ndarray | None = None  # model frames, uint8 (N, S, S), once decoded
    source_frames: list[int] = field(default_factory=list)  # a video's kept frame indices

    def pixels(self, sampling: VideoSampling) -> int:
        """Decoded pixels, padded to square (a video: its expected kept frames)."""
        if self.video is not None:
            return self.video.expected_frames(sampling) * self.video.padded_pixels
        return self.header.padded_pixels if self.header is not None else 0

    def decode_bytes(self, sampling: VideoSampling, image_size: int) -> tuple[int, int]:
        """(working memory while it decodes, memory of its model frames afterwards)."""
        if self.video is not None:
            return self.video.working_bytes, self.video.output_bytes(sampling, image_size)
        working = self.header.decode_bytes if self.header is not None else 0
        return working, image_size * image_size

    def close(self) -> None:
        """Release the opened image or the video's temporary file."""
        if self.image is not None:
            self.image.close()
        if self.video_path is not None:
            self.video_path.unlink(missing_ok=True)


@dataclass
class Plan:
    """What a request will decode and what that costs (from the headers)."""

    entries: list[Entry] = field(default_factory=list)
    pixels: int = 0  # decoded pixels of the files that passed, padded to square, summed
    decode_bytes: int = 0  # peak working memory of decoding them

    @property
    def passed(self) -> list[Entry]:
        """The entries not refused (yet)."""
        return [e for e in self.entries if e.error is None]

    @property
    def has_video(self) -> bool:
        return any(e.video is not None for e in self.passed)

    def close(self) -> None:
        for e in self.entries:
            e.close()


def _spool_to_path(fh: IO[bytes], suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="lusaug-video-")
    with os.fdopen(fd, "wb") as out:
        fh.seek(0)
        shutil.copyfileobj(fh, out)
    return Path(tmp)


def _is_empty(fh: IO[bytes]) -> bool:
    pos = fh.tell()
    empty = fh.read(1) == b""
    fh.seek(pos)
    return empty


def _open_image(fh: IO[bytes], limits: ImageLimits, name: str) -> tuple[Image.Image, ImageHeader]:
    """The shared header check, with a short side judged here (its own reason: too narrow)."""
    try:  # any other 422 of the shared path means the bytes are not a readable image
        img, header = open_image(fh, dataclasses.replace(limits, min_side=1), name)
    except BadInput as exc:
        raise as_refused(exc, Reason.UNDECODABLE) from exc
    if min(header.width, header.height) < limits.min_side:
        img.close()
        raise Refused(
            Reason.TOO_NARROW,
            f"{name}: image {header.width}x{header.height} is narrower than {limits.min_side} "
            "px (frames.min_side: the frames stage skips such images too)",
        )
    return img, header


def _inspect_one(entry: Entry, ctype: str, fh: IO[bytes], limits: ImageLimits) -> None:
    kind, suffix = media_kind(entry.name, ctype)
    if _is_empty(fh):
        raise Refused(Reason.EMPTY_FILE, f"{entry.name}: empty file")
    if kind == "video":
        entry.video_path = _spool_to_path(fh, suffix)
        entry.video = open_video(entry.video_path, limits, entry.name)
    else:
        entry.image, entry.header = _open_image(fh, limits, entry.name)


def inspect(
    files: list[tuple[str, str, IO[bytes]]],
    limits: ImageLimits,
    sampling: VideoSampling,
    spec: FrameSpec,
    max_pixels: int,
) -> Plan:
    """Read every file's header; refuse files one by one, and the request when it is too big.

    Args:
        files: (name, content type, seekable file) per upload.
        limits: per-image limits.
        sampling: video sampling (decides how many frames a video keeps).
        spec: the model's frame geometry.
        max_pixels: decoded-pixel budget of the whole request (0 = none).

    Raises:
        Refused: the files that passed decode to more than ``max_pixels`` (413).
    """
    plan = Plan()
    try:
        for name, ctype, fh in files:
            entry = Entry(name)
            plan.entries.append(entry)
            try:
                _inspect_one(entry, ctype, fh, limits)
            except BadInput as exc:
                entry.close()
                entry.error = as_refused(exc)
        passed = plan.passed
        plan.pixels = sum(e.pixels(sampling) for e in passed)
        if max_pixels and plan.pixels > max_pixels:
            raise _over_budget(passed, plan.pixels, max_pixels)
        if passed:
            costs = [e.decode_bytes(sampling, spec.image_size) for e in passed]
            plan.decode_bytes = max(w for w, _ in costs) + sum(o for _, o in costs)
        return plan
    except BaseException:
        plan.close()
        raise


def _over_budget(passed: list[Entry], pixels: int, budget: int) -> Refused:
    if len(passed) == 1 and passed[0].video is not None:
        what = f"{passed[0].name}: its sampled frames would"
    else:
        what = f"these {len(passed)} files"
    return Refused(
        Reason.REQUEST_PIXELS,
        f"{what} decode to {pixels} pixels (each image or kept video frame padded to a square), "
        f"over the budget of {budget} pixels per request: send fewer or smaller files",
    )


def decode(plan: Plan, spec: FrameSpec, sampling: VideoSampling, max_pixels: int) -> None:
    """Decode every entry that passed into its model frames, one file at a time.

    A file that fails here (corrupt data, entirely black, a video whose frames break the pixel
    budget as they come: containers can misreport their frame count) gets its error and the
    others go on.
    """
    passed = plan.passed
    spent = sum(e.header.padded_pixels for e in passed if e.header is not None)  # exact
    for e in passed:
        try:
            if e.video is not None and e.video_path is not None:
                left = max(max_pixels - spent, 1) if max_pixels else 0
                e.frames, e.source_frames = decode_video(
                    e.video_path, e.video, sampling, spec, left
                )
                spent += len(e.frames) * e.video.padded_pixels
            elif e.image is not None:
                grey = _load(e.image, e.name)
                try:
                    e.frames = prepare_frames([grey], spec)
                except BadInput as exc:  # the only refusal of framing: nothing but black
                    raise Refused(Reason.ALL_BLACK, f"{e.name}: {exc}") from exc
        except BadInput as exc:
            e.error = as_refused(exc)
        finally:
            e.close()


def _load(img: Image.Image, name: str) -> np.ndarray:
    try:
        return load_grey(img, name)
    except BadInput as exc:  # truncated or corrupt pixel data
        raise as_refused(exc, Reason.UNDECODABLE) from exc
