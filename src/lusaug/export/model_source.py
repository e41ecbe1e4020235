"""Where a model comes from: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a file.

:func:`resolve_model` turns such a URI into a local ``.onnx`` file (registry versions are
downloaded from the current MLflow tracking URI); :func:`current_version` says which version an
alias points to now (the server's hot reload polls it).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from lusaug.export.onnx_runtime import ModelSourceError

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
INT8_MARK = ".int8."  # int8 copies sit beside the fp32 file; serving picks the fp32 one


@dataclass(frozen=True)
class ModelSource:
    """Where a served model came from (what /metadata reports)."""

    path: Path
    uri: str  # what the user asked for (models:/...@alias or a path)
    name: str = ""  # registered model name ("" for a plain file)
    version: str = ""  # registered version ("" for a plain file)
    alias: str = ""


def version_dir(cache_dir: Path, name: str, version: str) -> Path:
    """The cache folder of one registered version (the server prunes by this name)."""
    return Path(cache_dir) / f"{name}-v{version}"


def resolve_model(uri: str, cache_dir: Path | str | None = None) -> ModelSource:
    """``models:/name@alias``, ``models:/name/version`` or a path -> a local .onnx file.

    Registry URIs are resolved against the current MLflow tracking URI (set it first); the
    version's artifacts are downloaded to ``cache_dir`` (a fresh temp dir by default).

    Raises:
        ModelSourceError: no such file, model, version or alias, or no .onnx artifact.
    """
    m = MODEL_URI.match(uri)
    if m is None:
        path = Path(uri)
        if not path.is_file():
            raise ModelSourceError(f"model {uri!r} is neither models:/<name>@<alias> nor a file")
        return ModelSource(path=path.resolve(), uri=uri)
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
    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="lusaug-model-"))
    dst = version_dir(root, name, str(mv.version))
    dst.mkdir(parents=True, exist_ok=True)
    local = Path(
        download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dst))
    )
    found = sorted(p for p in local.rglob("*.onnx") if INT8_MARK not in p.name)
    if not found:
        raise ModelSourceError(f"{uri} (version {mv.version}) holds no .onnx artifact")
    return ModelSource(path=found[0], uri=uri, name=name, version=str(mv.version), alias=alias)


def current_version(uri: str) -> str | None:
    """The version an alias URI points to now (None for files and fixed versions).

    Raises:
        MlflowException: the registry cannot be reached or the alias does not exist.
    """
    m = MODEL_URI.match(uri)
    if m is None or not m["alias"]:
        return None
    return str(MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version)
