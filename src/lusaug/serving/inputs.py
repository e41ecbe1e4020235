"""From uploaded files to model input, in two steps: inspect (headers only), then decode.

:func:`inspect` reads every header, refuses what breaks a limit, and returns a :class:`Plan`
that says what decoding will cost: the decoded pixels (each image or kept video frame padded to
a square, summed over the request and checked against ``max_request_pixels``) and the peak
working memory (what the server takes from its in-flight budget before decoding).
:func:`decode` then turns the plan into model frames one file at a time, shrinking each to model
size at once, so the peak is one image's decode, not the sum. ``lusaug predict`` runs the same
two steps per file.
"""

from __future__ import annotations

import contextlib
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
from lusaug.serving.preprocess import (
    VideoHeader,
    VideoSampling,
    decode_video,
    media_kind,
    open_video,
)


@dataclass
class Plan:
    """What a request will decode and what that costs (from the headers)."""

    names: list[str]
    images: list[tuple[Image.Image, ImageHeader]] = field(default_factory=list)
    video: VideoHeader | None = None
    video_path: Path | None = None
    pixels: int = 0  # decoded pixels, padded to square, summed
    decode_bytes: int = 0  # peak working memory of decoding

    def close(self) -> None:
        """Release the opened images and the video's temporary file."""
        for img, _ in self.images:
            img.close()
        if self.video_path is not None:
            self.video_path.unlink(missing_ok=True)


def _spool_to_path(fh: IO[bytes], suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="lusaug-video-")
    with os.fdopen(fd, "wb") as out:
        fh.seek(0)
        shutil.copyfileobj(fh, out)
    return Path(tmp)


def _over_budget(what: str, pixels: int, budget: int) -> BadInput:
    return BadInput(
        f"{what} decode to {pixels} pixels (each image or kept video frame padded to a square), "
        f"over the budget of {budget} pixels per request: send fewer or smaller images",
        status=413,
    )


def inspect(
    files: list[tuple[str, str, IO[bytes]]],
    limits: ImageLimits,
    sampling: VideoSampling,
    spec: FrameSpec,
    max_pixels: int,
    kinds: list[tuple[str, str]] | None = None,
) -> Plan:
    """Read every file's header and check the request against its limits.

    Args:
        files: (name, content type, seekable file) per upload.
        limits: per-image limits.
        sampling: video sampling (decides how many frames a video keeps).
        spec: the model's frame geometry.
        max_pixels: decoded-pixel budget of the whole request (0 = none).
        kinds: :func:`media_kind` of each file, when the caller has it already.

    Raises:
        BadInput: with the reason and a 4xx status (a video mixed with other files: 400).
    """
    kinds = kinds or [media_kind(name, ctype) for name, ctype, _ in files]
    plan = Plan(names=[name for name, _, _ in files])
    try:
        if any(kind == "video" for kind, _ in kinds):
            if len(files) > 1:
                raise BadInput("send one video per request, without other files", status=400)
            (name, _, fh), (_, suffix) = files[0], kinds[0]
            plan.video_path = _spool_to_path(fh, suffix)
            plan.video = open_video(plan.video_path, limits, name)
            plan.pixels = plan.video.expected_frames(sampling) * plan.video.padded_pixels
            if max_pixels and plan.pixels > max_pixels:
                raise _over_budget(f"{name}: its sampled frames would", plan.pixels, max_pixels)
            plan.decode_bytes = plan.video.decode_bytes(sampling, spec.image_size)
            return plan
        for name, _, fh in files:
            img, header = open_image(fh, limits, name)
            plan.images.append((img, header))
            plan.pixels += header.padded_pixels
            if max_pixels and plan.pixels > max_pixels:
                total = plan.pixels + sum(
                    _declared_pixels(f, limits) for _, _, f in files[len(plan.images) :]
                )
                raise _over_budget(f"these {len(files)} images", total, max_pixels)
        plan.decode_bytes = max(h.decode_bytes for _, h in plan.images)
        return plan
    except BaseException:
        plan.close()
        raise


def _declared_pixels(fh: IO[bytes], limits: ImageLimits) -> int:
    """Padded pixels an image header declares (0 when unreadable): for the refusal message."""
    with contextlib.suppress(BadInput):
        img, header = open_image(fh, limits)
        img.close()
        return header.padded_pixels
    return 0


def decode(plan: Plan, spec: FrameSpec, sampling: VideoSampling, max_pixels: int) -> np.ndarray:
    """The plan's model frames, uint8 (N, S, S), one file at a time.

    Raises:
        BadInput: corrupt data, an entirely black image, or a video whose frames break the
            pixel budget as they come (containers can misreport their frame count).
    """
    if plan.video is not None and plan.video_path is not None:
        return decode_video(plan.video_path, plan.video, sampling, spec, max_pixels)
    if len(plan.images) == 1:  # the common request: one frame
        img, h = plan.images[0]
        return prepare_frames([load_grey(img, h.name)], spec)
    frames = [prepare_frames([load_grey(img, h.name)], spec)[0] for img, h in plan.images]
    return np.stack(frames)
