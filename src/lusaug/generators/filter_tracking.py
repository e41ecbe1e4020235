"""MLflow logging and the registry update at the end of ``filter@k-G``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow

from lusaug.core.config import FilterParams, GenerateParams, MlflowParams, as_flat_dict
from lusaug.core.utils import read_execution
from lusaug.generators.mlflow_runs import numeric_metrics, register_best_generator, run_exists
from lusaug.generators.run_context import generator_tags, setup_mlflow

HEADLINE = (
    "candidates",
    "kept",
    "kept_fraction",
    "blocked",
    "rejected_by_reason",
    "memorisation",
    "kid",
    "kid_real_reference",
    "prdc",
    "prdc_real_reference",
    "recognition",
    "recognition_real_val",
    "recognition_ratio",
    "precision_ratio",
    "fid",
    "study_filter_pass_rate",
    "sharpness",
)


def track_filter(
    name: str,
    gen: GenerateParams,
    cfg: FilterParams,
    mlflow_cfg: MlflowParams,
    metrics: dict[str, Any],
    figures: dict[str, Any],
    table_csv: Path | str,
    metrics_json: Path | str,
) -> dict[str, Any]:
    """Log into the generator's run (+ a nested ``filter-<G>`` run), then update the registry.

    ``metrics`` is the stage's metrics with its execution record (the generator's run); the
    other generators' metrics files sit beside ``metrics_json``. Thresholds go on the nested run
    only: a re-filter must not change a logged param.
    """
    spec, target, fold = gen.generators[name], metrics["target_class"], metrics["fold"]
    setup_mlflow(mlflow_cfg)
    run_id = metrics.get("mlflow_run_id")
    flat = numeric_metrics(
        {k: metrics[k] for k in HEADLINE if metrics.get(k) is not None}, "filter."
    )
    tags = generator_tags(name, spec, target, fold) | {"blocked": str(metrics["blocked"]).lower()}
    with mlflow.start_run(
        run_id=run_id if run_exists(run_id) else None, run_name=f"generate-{name}"
    ):
        mlflow.set_tags(tags)
        mlflow.log_metrics(flat)
        for fname in ("filter_scatter.png", "beside_real.png"):
            mlflow.log_figure(figures[fname], f"filter/{fname}")
        with mlflow.start_run(run_name=f"filter-{name}", nested=True):
            mlflow.set_tags(tags)
            mlflow.log_params(as_flat_dict(cfg, "filter."))
            mlflow.log_metrics(flat)
            for fname, fig in figures.items():
                mlflow.log_figure(fig, f"filter/{fname}")
            mlflow.log_artifact(str(table_csv), "filter")
            mlflow.log_dict(dict(metrics), "filter/metrics.json")
    if not cfg.register:
        return {"status": "disabled (filter.register = false)"}
    all_metrics, not_comparable = [metrics], {}
    for g in gen.enabled:
        path = Path(metrics_json).with_name(f"synthetic_{g}.json")
        if g == name or not path.exists():
            continue
        other = {**json.loads(path.read_text()), **read_execution(path)}
        # scores compare only on the same split and encoder, and only a generator logged in this
        # tracking store can be registered (a metrics file from git may describe another run)
        if other.get("scored_against") != metrics["scored_against"]:
            not_comparable[g] = "scored on other data or another encoder (stale metrics file)"
        elif not run_exists(other.get("mlflow_run_id")):
            not_comparable[g] = "its run is not in this tracking store"
        else:
            all_metrics.append(other)
    summary = register_best_generator(all_metrics, target, cfg.max_memorisation_rate, fold)
    if not_comparable:
        summary["not_comparable"] = not_comparable
    return summary
