"""Reading and tagging registered versions: alias holders, version lookup, listing, export tags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from lusaug.tracking.errors import RegistryError

PARITY_TAG = "onnx_parity"  # pending (set at registration) | passed | failed (export stage)
MS_PER_S = 1000  # MLflow timestamps are epoch milliseconds


def alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version that holds ``name@alias``, or None when the alias (or the model) is unset."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """The model version, or a :class:`RegistryError` naming what does not exist."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc


def float_tag(tags: dict[str, str], key: str) -> float | None:
    """A numeric tag, or None when it is missing or not a number."""
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


def iso_time(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / MS_PER_S, UTC).isoformat(timespec="seconds")


def set_export_tags(name: str, version: str, report: dict[str, Any]) -> None:
    """Record the export stage's verdict on the version (the promotion gate reads ``onnx_parity``).

    Args:
        name: Registered model name.
        version: Version the export stage verified.
        report: The parity report (``reports/onnx_parity.json``): ``parity`` and ``int8`` parts.
    """
    client = MlflowClient()
    par = report["parity"]
    tags = {
        PARITY_TAG: "passed" if par["passed"] else "failed",
        "onnx_parity_max_abs_diff": f"{par['max_abs_diff']:.3g}",
        "onnx_parity_frames": str(par["frames"]),
        "int8_mode": report["int8"].get("mode", "none"),
    }
    if "accuracy_delta" in report["int8"]:
        tags["int8_accuracy_delta"] = f"{report['int8']['accuracy_delta']:.4f}"
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)


def list_versions(name: str, metric: str) -> list[dict[str, Any]]:
    """Every version with its aliases, strategy, architecture, ``metric`` (interval) and parity.

    Args:
        name: Registered model name.
        metric: Validation metric tag to show with its ``_lo``/``_hi`` interval.
    """
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
        holders = dict(client.get_registered_model(name).aliases)  # search omits aliases
    except MlflowException as exc:
        raise RegistryError(f"cannot list {name}: {exc.message}") from exc
    aliases: dict[str, list[str]] = {}
    for alias, v in holders.items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        t = mv.tags
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_name": t.get("run_name", ""),
                "strategy": t.get("strategy", ""),
                "architecture": t.get("architecture", ""),
                metric: float_tag(t, metric),
                f"{metric}_lo": float_tag(t, f"{metric}_lo"),
                f"{metric}_hi": float_tag(t, f"{metric}_hi"),
                "onnx_parity": t.get(PARITY_TAG, ""),
                "created": iso_time(mv.creation_timestamp),
            }
        )
    return rows
