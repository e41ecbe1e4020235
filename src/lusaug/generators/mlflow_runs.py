"""MLflow for the generator stages: runs in ``lusaug-generators``, pyfunc models, registry.

Registry rule (``lus-generator-<class>``, alias ``champion`` or ``champion-fold-<k>``): among the
enabled generators of the class whose ``synthetic_<G>.json`` exists beside this one (the same
fold), are NOT leaky, NOT blocked (memorisation above ``filter.max_memorisation_rate``) and have a
KID to the real validation frames, the one with the lowest KID mean. It runs at the end of every
``filter@G``, so the registry is right once the last filter of a fold has run, whatever order DVC
chose; a no-op when the champion is already that model. The base model of a fold is registered
as ``lus-base`` with the fold as a tag.
"""

from __future__ import annotations

import getpass
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
BASE_MODEL_NAME = "lus-base"
_MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


def registered_name(target_class: str) -> str:
    return f"{MODEL_PREFIX}{target_class}"


def champion_alias(fold: int | str | None) -> str:
    """``champion`` for a single split, ``champion-fold-<k>`` under cross-validation."""
    return CHAMPION if fold is None else f"{CHAMPION}-fold-{fold}"


def fold_tags(fold: int | str | None) -> dict[str, str]:
    """The ``fold`` tag every run of a fold carries (``holdout`` for a single split)."""
    return {"fold": "holdout" if fold is None else str(fold)}


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


def log_generator_model(
    model_dir: Path | str, base_dir: Path | str | None = None, name: str = "generator"
) -> str:
    """Log a saved generator (+ the base a TI generator needs) as a pyfunc; its ``models:/`` URI."""
    import mlflow
    import pandas as pd

    artifacts = {"generator": str(model_dir)}
    if base_dir is not None:
        artifacts["base"] = str(base_dir)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_MODEL_CODE),
        artifacts=artifacts,
        input_example=pd.DataFrame({"n": [1], "seed": [0]}),
        pip_requirements=["lusaug", "torch", "diffusers", "numpy", "pandas"],
    )
    return info.model_uri


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
    if metrics.get("blocked"):
        return False, f"blocked: {metrics.get('blocked_reason')}"
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
    all_metrics: Sequence[dict[str, Any]],
    target_class: str,
    max_memorisation_rate: float,
    fold: int | str | None = None,
) -> dict[str, Any]:
    """Register the best generator of ``target_class`` (alias ``champion``); returns a summary."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = registered_name(target_class)
    best, why = select_best(all_metrics, target_class, max_memorisation_rate)
    alias = champion_alias(fold)
    summary: dict[str, Any] = {"model_name": name, "alias": alias, "not_chosen": why}
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
        current = client.get_model_version_by_alias(name, alias)
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
        "blocked": "false",
        **fold_tags(fold),
        "model_uri": best["model_uri"],
        "mlflow_run_id": str(best.get("mlflow_run_id", "")),
        "promoted_by": getpass.getuser(),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": "lowest KID to real validation frames among non-leaky, non-blocked generators",
        "previous_version": str(previous or ""),
    }
    mv = mlflow.register_model(best["model_uri"], name, tags=tags)
    client.set_registered_model_alias(name, alias, mv.version)
    summary.update(status="registered", version=mv.version, previous_version=previous)
    logger.info("registered %s version %s (%s) as @%s", name, mv.version, best["generator"], alias)
    return summary


def log_base_model(base_dir: Path | str, name: str = "base_model") -> str:
    """Log a base pipeline folder as a pyfunc (prompt, n, seed -> frames); its URI."""
    import mlflow
    import pandas as pd

    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_MODEL_CODE),
        artifacts={"base": str(base_dir)},
        input_example=pd.DataFrame({"prompt": ["covid lung ultrasound"], "n": [1], "seed": [0]}),
        pip_requirements=["lusaug", "torch", "diffusers", "transformers", "numpy", "pandas"],
    )
    return info.model_uri


def register_base_model(model_uri: str, fold: int | str | None, run_id: str) -> dict[str, Any]:
    """Register a fold's base model as a new version of ``lus-base`` tagged with the fold."""
    import mlflow

    if not registry_supported():
        return {"status": "registry needs a database-backed tracking store; skipped"}
    tags = {**fold_tags(fold), "mlflow_run_id": run_id, "model_uri": model_uri}
    mv = mlflow.register_model(model_uri, BASE_MODEL_NAME, tags=tags)
    return {"status": "registered", "model_name": BASE_MODEL_NAME, "version": mv.version}
