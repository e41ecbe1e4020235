"""The JSON the server answers with, as Pydantic models: the OpenAPI schema, and one shape for
``POST /predict`` and ``lusaug predict --json`` (both build their answer here).

A /predict answer has one result per uploaded file, in upload order: an image's class
probabilities; a video's mean probabilities over its sampled frames plus each frame's own, with
the frame's index in the source and its time; or the file's own error with its status and
reason (:mod:`lusaug.serving.faults`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field

from lusaug.export.model_source import ModelSource
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.serving.faults import Reason

if TYPE_CHECKING:
    from lusaug.serving.inputs import Entry

INTENDED_USE = "research tool; not for clinical use"


class Probabilities(BaseModel):
    label: str = Field(description="the most probable class")
    prob: float = Field(description="its probability")
    probs: dict[str, float] = Field(description="probability of every class")


class FramePrediction(Probabilities):
    frame: int = Field(description="index of the frame in the source video (0-based)")
    time_s: float = Field(description="its time in the video: frame / fps (seconds)")


class ImageResult(Probabilities):
    kind: Literal["image"] = "image"
    file: str
    status: Literal[200] = 200


class VideoResult(Probabilities):
    """A video: ``label``/``prob``/``probs`` are the mean over its sampled frames."""

    kind: Literal["video"] = "video"
    file: str
    status: Literal[200] = 200
    frames: int = Field(description="sampled frames classified")
    fps: float = Field(description="the container's frame rate (30 when it reports none)")
    frame_predictions: list[FramePrediction]


class FileError(BaseModel):
    kind: Literal["error"] = "error"
    file: str
    status: int = Field(description="what this file alone would have been answered")
    reason: Reason
    error: str = Field(description="what is wrong with the file")


FileResult = Annotated[ImageResult | VideoResult | FileError, Field(discriminator="kind")]


class ModelRef(BaseModel):
    name: str = Field(description="registered name, or the .onnx file name")
    version: str = Field(description='registered version ("" for a plain file)')
    alias: str = Field(description='the alias it was loaded through ("" if none)')
    uri: str
    onnx_sha256: str


class PredictResponse(BaseModel):
    """200: at least one file was predicted; the others carry their own error."""

    results: list[FileResult]
    predicted: int = Field(description="files with a prediction")
    failed: int = Field(description="files with an error")
    model: ModelRef
    classes: list[str]
    intended_use: str = INTENDED_USE
    elapsed_ms: float


class ErrorResponse(BaseModel):
    """A refused request; when every file failed, ``results`` has each file's own error."""

    detail: str
    reason: Reason
    results: list[FileError] | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    intended_use: str = INTENDED_USE


class LiveResponse(BaseModel):
    status: Literal["alive"]
    intended_use: str = INTENDED_USE


class ModelSummary(BaseModel):
    name: str
    version: str
    alias: str


class ReadyResponse(BaseModel):
    status: Literal["ready", "starting"]
    model: ModelSummary
    intended_use: str = INTENDED_USE


class Limits(BaseModel):
    max_request_mb: float
    max_files: int
    max_image_side: int
    max_image_pixels: int
    min_side: int
    max_request_pixels: int
    max_inflight_mb: float
    inflight_peak_mb: float
    refused_busy: int


class MicroBatching(BaseModel):
    window_ms: float
    max_batch: int
    batches: int | None = Field(description="ONNX calls so far (null: batching off)")
    inline: int | None = Field(description="lone requests run on the event loop")
    inline_max_frames: int


class MetadataResponse(BaseModel):
    name: str
    version: str
    alias: str
    uri: str
    classes: list[str]
    input_size: list[int]
    image_size: int
    mean: float
    std: float
    onnx_sha256: str
    onnx_metadata: dict[str, str]
    loaded_at: str
    reloads: int
    last_reload_error: str
    intended_use: str = INTENDED_USE
    limits: Limits
    micro_batching: MicroBatching


class ReloadResponse(BaseModel):
    reloaded: bool
    version: str
    previous: str | None = None


class ReloadError(BaseModel):
    detail: str
    reloaded: Literal[False] = False


def model_ref(source: ModelSource, clf: OnnxClassifier) -> ModelRef:
    """What the answer says about the model that produced it."""
    return ModelRef(
        name=source.name or source.path.name,
        version=source.version,
        alias=source.alias,
        uri=source.uri,
        onnx_sha256=clf.info.sha256,
    )


def file_results(
    entries: Sequence[Entry], probs: np.ndarray | None, classes: Sequence[str]
) -> list[ImageResult | VideoResult | FileError]:
    """One result per entry, in order; ``probs`` holds the passed entries' frames, in order."""
    results: list[ImageResult | VideoResult | FileError] = []
    start = 0
    for e in entries:
        if e.error is not None:
            results.append(
                FileError(file=e.name, status=e.error.status, reason=e.error.reason,
                          error=str(e.error))
            )  # fmt: skip
            continue
        n = len(e.frames)
        rows, start = probs[start : start + n], start + n
        if e.video is not None:
            results.append(video_result(e.name, classes, rows, e.source_frames, e.video.fps))
        else:
            results.append(image_result(e.name, classes, rows[0]))
    return results


def probabilities(classes: Sequence[str], p: np.ndarray) -> dict[str, object]:
    """label, prob and probs of one probability row."""
    return {
        "label": classes[int(p.argmax())],
        "prob": float(p.max()),
        "probs": {c: float(v) for c, v in zip(classes, p)},
    }


def image_result(file: str, classes: Sequence[str], p: np.ndarray) -> ImageResult:
    return ImageResult(file=file, **probabilities(classes, p))


def video_result(
    file: str, classes: Sequence[str], probs: np.ndarray, source_frames: Sequence[int], fps: float
) -> VideoResult:
    """A video's mean-probability vote and every sampled frame's own prediction."""
    frames = [
        FramePrediction(frame=i, time_s=i / fps, **probabilities(classes, p))
        for i, p in zip(source_frames, probs)
    ]
    return VideoResult(
        file=file,
        frames=len(frames),
        fps=fps,
        frame_predictions=frames,
        **probabilities(classes, probs.mean(axis=0)),
    )
