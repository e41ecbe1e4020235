"""Register a model URI as a new version with tags and a model card, under the first alias.

Generic on purpose: the caller says what the model is (``model_uri``), what it is known by
(``tags``: provenance, validation metrics with their intervals) and its card (``description``).
Giving it the registration alias is an audited move like any promotion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from lusaug.tracking.history import HistoryEntry
from lusaug.tracking.lock import DEFAULT_LEASE_S, DEFAULT_WAIT_S
from lusaug.tracking.moves import commit_move, plan_move, registry_operation
from lusaug.tracking.versions import alias_holder

logger = logging.getLogger(__name__)

TASK_TAG = "task"
TASK = "lung-ultrasound frame classification"
METRIC_FORMAT = ".6g"  # metric tags keep 6 significant digits


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """Validation metrics (and ``_lo``/``_hi`` bounds) as version tags, which the gates read."""
    return {k: format(float(v), METRIC_FORMAT) for k, v in metrics.items()}


def find_version(name: str, tag: str, value: str) -> ModelVersion | None:
    """The newest version of ``name`` whose tag ``tag`` equals ``value``, or None."""
    try:
        found = MlflowClient().search_model_versions(f"name='{name}' and tags.{tag}='{value}'")
    except MlflowException:  # the model does not exist yet
        return None
    return max(found, key=lambda mv: int(mv.version)) if found else None


def claim_alias(
    name: str,
    alias: str,
    version: str,
    *,
    reason: str,
    lock_wait_s: float = DEFAULT_WAIT_S,
    lock_lease_s: float = DEFAULT_LEASE_S,
) -> HistoryEntry | None:
    """Give ``alias`` to ``version`` (history kind ``register``); None if it already has it."""
    client = MlflowClient()
    with registry_operation(
        client,
        name,
        purpose=f"register v{version} as {alias}",
        wait_s=lock_wait_s,
        lease_s=lock_lease_s,
    ) as lock:
        if alias_holder(client, name, alias) == str(version):
            return None
        entry = plan_move(
            client, name, kind="register", alias=alias, version=str(version), reason=reason
        )
        return commit_move(client, name, entry, lock)


def register_version(
    model_uri: str,
    name: str,
    *,
    tags: Mapping[str, str],
    description: str,
    alias: str,
    reason: str,
    lock_wait_s: float = DEFAULT_WAIT_S,
) -> str:
    """Register ``model_uri`` as a new version of ``name`` and give it ``alias``.

    Args:
        model_uri: What to register (``models:/m-...``, ``runs:/...``, an artifact URI).
        name: Registered model name (created if missing).
        tags: Version tags (provenance, validation metrics and intervals, ...).
        description: The model card (Markdown), shown as the version's description.
        alias: The first alias of the promotion order (``register.alias``).
        reason: History reason of the alias move.
        lock_wait_s: Seconds to wait for a concurrent registry operation.

    Returns:
        The new version number. A version whose card cannot be written is deleted again; a
        crash before the alias move leaves a version without alias, which a re-registration
        of the same model finds (:func:`find_version`) and claims.
    """
    client = MlflowClient()
    mv = mlflow.register_model(model_uri, name, tags=dict(tags))
    version = str(mv.version)
    try:
        client.update_model_version(name, version, description=description)
        client.set_registered_model_tag(name, TASK_TAG, TASK)
    except Exception:
        client.delete_model_version(name, version)  # no half-registered version
        raise
    claim_alias(name, alias, version, reason=reason, lock_wait_s=lock_wait_s)
    return version
