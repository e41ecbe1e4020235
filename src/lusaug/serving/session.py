"""An onnxruntime session that knows its own preprocessing, and where a model comes from.

The ONNX file carries ``lusaug.*`` metadata_props (classes, image size, mean, std, provenance)
written by :func:`lusaug.export.onnx_export.export_onnx`; :class:`OnnxClassifier` reads them from
the session, so serving never takes these numbers from anywhere else. :func:`resolve_model` turns
``models:/<name>@<alias>`` (or ``models:/<name>/<version>``) or a file path into a local .onnx.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lusaug.errors import LusaugError
from lusaug.serving.preprocess import FrameSpec, normalise, prepare_frames, softmax
from lusaug.utils import sha256_file

META_PREFIX = "lusaug."
REQUIRED_META = ("classes", "image_size", "mean", "std")
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelSourceError(LusaugError, ValueError):
    """The requested model cannot be found or is not a lusaug ONNX classifier."""


@dataclass(frozen=True)
class ModelSource:
    """Where a served model came from (what /metadata reports)."""

    path: Path
    uri: str  # what the user asked for (models:/...@alias or a path)
    name: str = ""  # registered model name ("" for a plain file)
    version: str = ""  # registered version ("" for a plain file)
    alias: str = ""


@dataclass(frozen=True)
class ModelInfo:
    classes: list[str]
    image_size: int
    mean: float
    std: float
    sha256: str
    metadata: dict[str, str] = field(default_factory=dict)  # every lusaug.* key, as stored

    @property
    def frame_spec(self) -> FrameSpec:
        """Frame geometry: size, and black-border trimming as the frames stage did it."""
        return FrameSpec(
            self.image_size,
            self.metadata.get("auto_crop_black", "false").lower() == "true",
            int(self.metadata.get("black_threshold", "0")),
        )


def parse_metadata(props: dict[str, str], where: str) -> tuple[list[str], int, float, float]:
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


class OnnxClassifier:
    """An onnxruntime CPU session plus the preprocessing numbers stored in the model."""

    def __init__(self, path: Path | str, threads: int = 0) -> None:
        import onnxruntime as ort

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
        return softmax(self.logits(x))

    def frames_to_input(self, frames: Sequence[np.ndarray], joint: bool = False) -> np.ndarray:
        """Grey uint8 images -> model input (this model's geometry and normalisation).

        ``joint``: the frames of one video (one black-border box for all, as in training).
        """
        stacked = prepare_frames(frames, self.info.frame_spec, joint)
        return normalise(stacked, self.info.mean, self.info.std)


def resolve_model(uri: str, cache_dir: Path | str | None = None) -> ModelSource:
    """``models:/name@alias``, ``models:/name/version`` or a path -> a local .onnx file.

    Registry URIs are resolved against the current MLflow tracking URI (set it first); the
    version's artifacts are downloaded to ``cache_dir`` (a fresh temp dir by default).
    """
    m = _URI.match(uri)
    if m is None:
        path = Path(uri)
        if not path.is_file():
            raise ModelSourceError(f"model {uri!r} is neither models:/<name>@<alias> nor a file")
        return ModelSource(path=path.resolve(), uri=uri)
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    name, alias, version = m["name"], m["alias"] or "", m["version"] or ""
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as exc:
        raise ModelSourceError(f"{uri}: {exc.message}") from exc
    dst = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="lusaug-model-"))
    dst = dst / f"{name}-v{mv.version}"
    dst.mkdir(parents=True, exist_ok=True)
    local = Path(
        download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dst))
    )
    found = sorted(p for p in local.rglob("*.onnx") if ".int8." not in p.name)
    if not found:
        raise ModelSourceError(f"{uri} (version {mv.version}) holds no .onnx artifact")
    return ModelSource(path=found[0], uri=uri, name=name, version=str(mv.version), alias=alias)


def current_version(uri: str) -> str | None:
    """The version an alias URI points to now (None for files and fixed versions)."""
    m = _URI.match(uri)
    if m is None or not m["alias"]:
        return None
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version)
