"""The validation winner: read ``metrics/validation_runs.json``, pick by a validation metric.

A :class:`RunSummary` is one candidate model with its validation metrics (``val_*`` with
``_lo``/``_hi`` intervals), provenance and checkpoint: whatever produced it (a CV run, a final
model), registration only needs this shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import RegisterParams
from lusaug.core.utils import read_execution
from lusaug.tracking.errors import RegistryError

VALIDATION_PREFIX = "val_"


@dataclass(frozen=True)
class RunSummary:
    """One model as ``metrics/validation_runs.json`` describes it."""

    name: str
    entry: dict[str, Any]

    def value(self, metric: str) -> float:
        if metric not in self.entry or self.entry[metric] is None:
            available = sorted(k for k in self.entry if k.startswith(VALIDATION_PREFIX))
            raise RegistryError(
                f"run {self.name} has no validation metric {metric!r} (register.metric); "
                f"available: {available}"
            )
        return float(self.entry[metric])

    def interval(self, metric: str) -> tuple[float | None, float | None]:
        lo, hi = self.entry.get(f"{metric}_lo"), self.entry.get(f"{metric}_hi")
        return (None if lo is None else float(lo), None if hi is None else float(hi))

    def checkpoint_path(self, root: Path | str) -> Path:
        """The checkpoint file (relative paths are relative to ``root``); must exist."""
        ckpt = Path(str(self.entry.get("checkpoint", "")))
        ckpt = ckpt if ckpt.is_absolute() else Path(root) / ckpt
        if not ckpt.is_file():
            raise RegistryError(f"run {self.name}: checkpoint {ckpt} not found")
        return ckpt

    def validation_metrics(self) -> dict[str, float]:
        """Every numeric ``val_*`` entry (metrics and their interval bounds)."""
        return {
            k: float(v)
            for k, v in self.entry.items()
            if k.startswith(VALIDATION_PREFIX)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }


def read_validation_runs(path: Path | str) -> list[RunSummary]:
    """The runs of ``metrics/validation_runs.json`` (or ``models/final/candidate.json``) with
    their execution records, sorted by name."""
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"{path} not found: run `dvc repro evaluate` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise RegistryError(f"{path} lists no runs")
    execution = read_execution(path)  # per run: its MLflow run id (absent after a `dvc pull`)
    return [
        RunSummary(name, {**entry, **execution.get(name, {})})
        for name, entry in sorted(data.items())
    ]


def select_winner(runs: Sequence[RunSummary], metric: str) -> RunSummary:
    """Highest validation ``metric``; ties go to the first run name (sorted), so it is stable."""
    if not metric.startswith(VALIDATION_PREFIX):
        raise RegistryError(f"register.metric must be a validation metric (val_*), got {metric!r}")
    if not runs:
        raise RegistryError("no runs to choose a winner from")
    return max(runs, key=lambda r: (r.value(metric), [-ord(c) for c in r.name]))


def provenance_tags(
    run: RunSummary, cfg: RegisterParams, standard: dict[str, str]
) -> dict[str, str]:
    """What the registered version came from: run, strategy, architecture, code and data."""
    return {
        "run_name": run.name,
        "strategy": str(run.entry.get("strategy", "")),
        "architecture": str(run.entry.get("architecture", "")),
        "seed": str(run.entry.get("seed", "")),
        "timm_model": str(run.entry.get("model") or ""),
        "train_run_id": str(run.entry.get("mlflow_run_id") or ""),
        "checkpoint": str(run.entry.get("checkpoint", "")),
        "selection_metric": cfg.metric,
        "git_commit": standard.get("git_commit", "unknown"),
        "data_hash": standard.get("data_hash", "unknown"),
    }
