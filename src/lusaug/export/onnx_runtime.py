"""An onnxruntime session that knows its own preprocessing (read from the model's metadata).

The ONNX file carries ``lusaug.*`` metadata_props (classes, image size, mean, std, border
trimming, provenance) written by :func:`lusaug.export.onnx_export.export_onnx`;
:class:`OnnxClassifier` reads them from the session, so everything that runs the model (the
export stage's parity check, the MLflow pyfunc, ``lusaug serve`` and ``lusaug predict``) takes
these numbers from the model itself and never from anywhere else.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lusaug.core.errors import LusaugError
from lusaug.core.utils import sha256_file
from lusaug.export.model_input import FrameSpec, normalise, prepare_frames

META_PREFIX = "lusaug."
REQUIRED_META = ("classes", "image_size", "mean", "std")


class ModelSourceError(LusaugError, ValueError):
    """The requested model cannot be found or is not a lusaug ONNX classifier."""


@dataclass(frozen=True)
class ModelInfo:
    """What a lusaug ONNX classifier says about itself."""

    classes: list[str]
    image_size: int
    mean: float
    std: float
    sha256: str
    metadata: dict[str, str] = field(default_factory=dict)  # every lusaug.* key, as stored

    @functools.cached_property  # read on every request; the metadata never changes
    def frame_spec(self) -> FrameSpec:
        """Frame geometry: size, and black-border trimming as the frames stage did it."""
        return FrameSpec(
            self.image_size,
            self.metadata.get("auto_crop_black", "false").lower() == "true",
            int(self.metadata.get("black_threshold", "0")),
        )


def parse_metadata(props: dict[str, str], where: str) -> tuple[list[str], int, float, float]:
    """(classes, image size, mean, std) from ``lusaug.*`` metadata_props.

    Raises:
        ModelSourceError: a required key is missing (not exported by lusaug).
    """
    missing = [k for k in REQUIRED_META if META_PREFIX + k not in props]
    if missing:
        raise ModelSourceError(
            f"{where} lacks the preprocessing metadata {missing}: export it with `lusaug` "
            "(pipelines/register.py) so size, normalisation and classes travel with the model"
        )
    classes = json.loads(props[META_PREFIX + "classes"])
    return (
        [str(c) for c in classes],
        int(props[META_PREFIX + "image_size"]),
        float(props[META_PREFIX + "mean"]),
        float(props[META_PREFIX + "std"]),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, shifted by the row maximum (no overflow)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OnnxClassifier:
    """An onnxruntime CPU session plus the preprocessing numbers stored in the model."""

    def __init__(self, path: Path | str, threads: int = 0) -> None:
        """Open ``path`` with ``threads`` intra-op threads (0 = onnxruntime's default).

        Raises:
            ModelSourceError: the file is missing, not ONNX, or lacks lusaug's metadata.
        """
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelSourceError(f"ONNX model {self.path} not found")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
        # Spinning intra-op threads burn the cores the HTTP side needs (2x slower under load here).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelSourceError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        classes, size, mean, std = parse_metadata(props, str(self.path))
        meta = {
            k.removeprefix(META_PREFIX): v for k, v in props.items() if k.startswith(META_PREFIX)
        }
        self.info = ModelInfo(classes, size, mean, std, sha256_file(self.path), meta)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, S, S) -> logits (N, C)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def proba(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, S, S) -> class probabilities (N, C)."""
        return softmax(self.logits(x))

    def frames_to_input(self, frames: Sequence[np.ndarray], joint: bool = False) -> np.ndarray:
        """Grey uint8 images -> model input (this model's geometry and normalisation).

        Args:
            frames: grey uint8 images of any size.
            joint: the frames of one video (one black-border box for all, as in training).
        """
        stacked = prepare_frames(frames, self.info.frame_spec, joint)
        return self.normalise(stacked)

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S) model frames -> float32 model input with this model's mean/std."""
        return normalise(frames, self.info.mean, self.info.std)
