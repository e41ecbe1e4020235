"""MLflow for generators: runs in ``lusaug-generators``, the pyfunc model, the registry.

Registry rule (``lus-generator-<class>``, alias ``champion``): among the enabled generators of
the class whose ``metrics/synthetic_<G>.json`` exists, are NOT leaky, have a KID and a
memorisation rate <= ``filter.max_memorisation_rate``, the one with the lowest KID mean. It runs
at the end of every ``filter@G`` over all such files, so the registry is right once the last
filter has run, whatever order DVC chose; a no-op when the champion is already that model.
"""

from __future__ import annotations

import getpass
import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODEL_PREFIX = "lus-generator-"
CHAMPION = "champion"
RUN_FILE = "run.json"
_MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


def registered_name(target_class: str) -> str:
    return f"{MODEL_PREFIX}{target_class}"


class MetricBuffer:
    """Collects per-step metrics and writes them with one ``log_batch`` call per flush."""

    def __init__(self, run_id: str):
        from mlflow import MlflowClient

        self.client = MlflowClient()
        self.run_id = run_id
        self.pending: list[Any] = []

    def add(self, key: str, values: Sequence[float], first_step: int = 1) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(v), now, first_step + i) for i, v in enumerate(values)]

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:1000], self.pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)


def numeric_metrics(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested numbers (bools as 0/1) for ``mlflow.log_metrics``; skip the rest."""
    out: dict[str, float] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(numeric_metrics(v, f"{key}."))
        elif isinstance(v, bool) or (isinstance(v, int | float) and np.isfinite(v)):
            out[key] = float(v)
    return out


def log_generator_model(model_dir: Path | str, name: str = "generator") -> str:
    """Log a saved generator as a pyfunc (models-from-code); returns its ``models:/`` URI."""
    import mlflow
    import pandas as pd

    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_MODEL_CODE),
        artifacts={"generator": str(model_dir)},
        input_example=pd.DataFrame({"n": [1], "seed": [0]}),
        pip_requirements=["lusaug", "torch", "diffusers", "numpy", "pandas"],
    )
    return info.model_uri


def write_run_file(model_dir: Path | str, **info: Any) -> None:
    Path(model_dir, RUN_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_run_file(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def run_exists(run_id: str | None) -> bool:
    """True when ``run_id`` is in the current tracking store."""
    if not run_id:
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_run(run_id)
        return True
    except MlflowException:
        return False


def registry_supported() -> bool:
    """The Model Registry needs a database or server store, not a plain file store."""
    import mlflow

    return not mlflow.get_registry_uri().startswith(("file:", "./", "/"))


def eligible(metrics: dict[str, Any], max_memorisation_rate: float) -> tuple[bool, str]:
    """Whether a generator's metrics allow registration, and why not."""
    if metrics.get("leaky"):
        return False, "leaky (saw validation/test frames)"
    if not metrics.get("model_uri"):
        return False, "no logged model"
    kid = metrics.get("kid") or {}
    if kid.get("mean") is None:
        return False, "no KID (fewer than 2 kept samples)"
    rate = metrics.get("memorisation", {}).get("rate")
    if rate is None or rate > max_memorisation_rate:
        return False, f"memorisation rate {rate} > {max_memorisation_rate}"
    return True, ""


def select_best(
    all_metrics: Iterable[dict[str, Any]], target_class: str, max_memorisation_rate: float
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The registrable generator with the lowest KID mean, plus why each other one is not."""
    best, why = None, {}
    for m in all_metrics:
        if m.get("target_class") != target_class:
            continue
        ok, reason = eligible(m, max_memorisation_rate)
        if not ok:
            why[m["generator"]] = reason
            continue
        if best is None or m["kid"]["mean"] < best["kid"]["mean"]:
            if best is not None:
                why[best["generator"]] = "higher KID"
            best = m
        else:
            why[m["generator"]] = "higher KID"
    return best, why


def register_best_generator(
    all_metrics: Sequence[dict[str, Any]], target_class: str, max_memorisation_rate: float
) -> dict[str, Any]:
    """Register the best generator of ``target_class`` (alias ``champion``); returns a summary."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = registered_name(target_class)
    best, why = select_best(all_metrics, target_class, max_memorisation_rate)
    summary: dict[str, Any] = {"model_name": name, "not_chosen": why}
    if best is None:
        summary["status"] = "no eligible generator"
        logger.warning("%s: nothing registered (%s)", name, why)
        return summary
    if not registry_supported():
        summary["status"] = "registry needs a database-backed tracking store; skipped"
        return summary
    client = MlflowClient()
    summary["generator"] = best["generator"]
    previous = None
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        previous = current.version
        if current.tags.get("model_uri") == best["model_uri"]:
            summary.update(status="unchanged", version=current.version)
            return summary
    except MlflowException:
        pass
    import mlflow

    tags = {
        "generator": best["generator"],
        "target_class": target_class,
        "kid_mean": str(best["kid"]["mean"]),
        "memorisation_rate": str(best["memorisation"]["rate"]),
        "leaky": "false",
        "model_uri": best["model_uri"],
        "mlflow_run_id": str(best.get("mlflow_run_id", "")),
        "promoted_by": getpass.getuser(),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": "lowest KID among non-leaky generators under the memorisation bound",
        "previous_version": str(previous or ""),
    }
    mv = mlflow.register_model(best["model_uri"], name, tags=tags)
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    summary.update(status="registered", version=mv.version, previous_version=previous)
    logger.info(
        "registered %s version %s (%s) as @%s", name, mv.version, best["generator"], CHAMPION
    )
    return summary
