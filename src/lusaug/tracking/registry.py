"""The MLflow Model Registry side of lusaug, in one import: select, register, promote, audit.

MLflow 3 deprecated registry *stages*; lusaug uses **aliases** named after them:
``candidate`` (set by the ``register`` stage) -> ``staging`` -> ``production``.
This module only re-exports; each concern has its own module:

- :mod:`~lusaug.tracking.selection`: the validation winner of ``metrics/validation_runs.json``.
- :mod:`~lusaug.tracking.card`: the model card (the version's description).
- :mod:`~lusaug.tracking.registration`: a model URI -> a new version with tags, card and alias.
- :mod:`~lusaug.tracking.promotion`: alias order, gates, promote, rollback.
- :mod:`~lusaug.tracking.history`: the append-only audit history (one model tag per entry).
- :mod:`~lusaug.tracking.lock` and :mod:`~lusaug.tracking.moves`: the registry lock and the
  crash-safe alias move (intent first, alias move as the commit point, repair on next command).
- :mod:`~lusaug.tracking.versions`: lookups, the version table, the export stage's tags.

Converting a checkpoint to the registered ONNX pyfunc is the export package's job
(:mod:`lusaug.export.publish`); the ``register`` stage composes the two.
"""

from __future__ import annotations

from lusaug.tracking.card import model_card, split_counts
from lusaug.tracking.errors import (
    PromotionRefused,
    RegistryBusy,
    RegistryConflict,
    RegistryError,
)
from lusaug.tracking.history import GateResult, HistoryEntry
from lusaug.tracking.moves import ensure_repaired, history
from lusaug.tracking.promotion import (
    PromotionResult,
    alias_order,
    check_gates,
    check_order,
    promote,
    rollback,
)
from lusaug.tracking.registration import (
    claim_alias,
    find_version,
    metric_tags,
    register_version,
)
from lusaug.tracking.selection import (
    RunSummary,
    provenance_tags,
    read_validation_runs,
    select_winner,
)
from lusaug.tracking.versions import PARITY_TAG, list_versions, set_export_tags

__all__ = [
    "PARITY_TAG",
    "GateResult",
    "HistoryEntry",
    "PromotionRefused",
    "PromotionResult",
    "RegistryBusy",
    "RegistryConflict",
    "RegistryError",
    "RunSummary",
    "alias_order",
    "check_gates",
    "check_order",
    "claim_alias",
    "ensure_repaired",
    "find_version",
    "history",
    "list_versions",
    "metric_tags",
    "model_card",
    "promote",
    "provenance_tags",
    "read_validation_runs",
    "register_version",
    "rollback",
    "select_winner",
    "set_export_tags",
    "split_counts",
]
