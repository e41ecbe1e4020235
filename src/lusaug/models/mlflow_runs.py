"""MLflow tracking of classifier runs: one child run per training, grouped under a parent.

Every ``train@<fold>`` process of one ``dvc repro`` finds (or creates) the same parent run in
the ``lusaug-classifiers`` experiment: the parent is identified by a *group key*, a hash of the
git commit, the whole params.yaml and the data hash, so every fold's runs of one repro land under
one parent and the MLflow UI compare view lines strategies up side by side (filter on
``tags.fold``). ``LUSAUG_MLFLOW_GROUP`` overrides the key (e.g. to group runs of several
commits). The client API with explicit run ids is used throughout, so nothing depends on a global
"active run". Every run logs the data it read as MLflow dataset inputs (``data/raw`` and its
split file, digests = their DVC hashes: :func:`lusaug.core.mlflow_store.log_data_inputs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusaug.core.mlflow_store import (
    data_hash,
    git_commit,
    log_data_inputs,
    setup_experiment,
    standard_tags,
    synthetic_input,
    tracking_uri,
)

logger = logging.getLogger(__name__)

GROUP_TAG = "lusaug.group"
ROLE_TAG = "lusaug.role"
GROUP_ENV = "LUSAUG_MLFLOW_GROUP"


def group_key(flat_params: dict[str, Any], root: Path | str = ".") -> str:
    """Key shared by every run of one ``dvc repro``: commit (clean or not), params, data."""
    override = os.environ.get(GROUP_ENV)
    if override:
        return override
    blob = json.dumps(
        {
            "commit": git_commit(root).removesuffix("-dirty"),
            "params": flat_params,
            "data": data_hash(root),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunTracking:
    """Where and how training runs are logged (built once per process by the stage script)."""

    tracking_uri: str  # mlflow.tracking_uri ("" = the repository's mlflow.db)
    params: dict[str, Any] = field(default_factory=dict)  # flattened params logged on each run
    group: str = ""  # parent group key ("" = group_key(params))
    root: Path = Path(".")  # repository root (default store, git commit, data hash)
    splits_csv: Path | None = None  # the split file the runs read (logged as a dataset input)
    run_name: str = ""  # "" = the run's own name (<strategy>-<arch>-<seed>)
    # lusaug.role tag: "train" runs sit under their group's parent; any other role (the final
    # refit: "final") has no parent, so it never shows up among a fold group's runs
    role: str = "train"

    def group_key(self) -> str:
        return self.group or group_key(self.params, self.root)


def dvc_stage() -> str:
    """The DVC stage this process runs in (DVC sets DVC_STAGE), or LUSAUG_DVC_STAGE."""
    return os.environ.get("LUSAUG_DVC_STAGE") or os.environ.get("DVC_STAGE", "")


def find_or_create_parent(
    exp_id: str, key: str, root: Path | str = ".", name_prefix: str = "train-matrix"
) -> str:
    """Run id of the parent run tagged with group ``key`` (created, FINISHED, when absent)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    query = f"tags.`{GROUP_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'parent'"
    found = client.search_runs(
        [exp_id], filter_string=query, order_by=["attributes.start_time ASC"]
    )
    if found:
        return found[0].info.run_id
    tags = standard_tags(root, **{GROUP_TAG: key, ROLE_TAG: "parent"})
    tags["dvc_stage"] = ""
    run = client.create_run(exp_id, run_name=f"{name_prefix}-{key}", tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")
    # Two processes may race to create it: keep the oldest, retire ours if it lost.
    found = client.search_runs(
        [exp_id], filter_string=query, order_by=["attributes.start_time ASC"]
    )
    winner = found[0].info.run_id if found else run.info.run_id
    if winner != run.info.run_id:
        client.delete_run(run.info.run_id)
    return winner


@dataclass
class _Session:
    """What every run of one process shares: the experiment, a client, the parent, base tags."""

    experiment_id: str
    client: Any
    parent_run_id: str
    tags: dict[str, str]


# One session per (store, repository, group) and process: a fold's runs pay the experiment
# look-up, the parent search and the git calls once, not once per run.
_SESSIONS: dict[tuple[str, str, str], _Session] = {}


def _session(tracking: RunTracking) -> _Session:
    import mlflow
    from mlflow.tracking import MlflowClient

    key = (tracking_uri(tracking.tracking_uri, tracking.root), str(tracking.root), tracking.group)
    if key not in _SESSIONS:
        exp_id = setup_experiment("classifiers", tracking.tracking_uri, tracking.root)
        parent = find_or_create_parent(exp_id, tracking.group_key(), tracking.root)
        _SESSIONS[key] = _Session(exp_id, MlflowClient(), parent, standard_tags(tracking.root))
    mlflow.set_tracking_uri(key[0])  # the model logging and artifact calls use the fluent API
    return _SESSIONS[key]


class TrainTracker:
    """Logs one training run; a disabled tracker (``enabled=False``) does nothing."""

    def __init__(
        self,
        tracking: RunTracking | None,
        run_name: str,
        tags: dict[str, Any],
        resume_run_id: str | None = None,
    ) -> None:
        self.enabled = tracking is not None
        self.run_id: str | None = None
        self.parent_run_id: str | None = None
        if tracking is None:
            return
        session = _session(tracking)
        self.client = session.client
        if resume_run_id:
            try:
                run = self.client.get_run(resume_run_id)
                if run.info.lifecycle_stage == "active":
                    self.run_id = resume_run_id
                    self.parent_run_id = run.data.tags.get("mlflow.parentRunId")
                    self.client.update_run(resume_run_id, status="RUNNING")
                    logger.info("resuming MLflow run %s", resume_run_id)
                    log_data_inputs(resume_run_id, tracking.root, tracking.splits_csv)
                    return
            except Exception as exc:  # noqa: BLE001 - a reset store must not stop training
                logger.warning("cannot resume MLflow run %s (%s): new run", resume_run_id, exc)
        all_tags = {**session.tags, **{k: str(v) for k, v in tags.items()}}
        all_tags["dvc_stage"] = dvc_stage()
        if tracking.role == "train":
            self.parent_run_id = session.parent_run_id
            all_tags["mlflow.parentRunId"] = self.parent_run_id
        all_tags[ROLE_TAG] = tracking.role
        run = self.client.create_run(
            session.experiment_id, run_name=tracking.run_name or run_name, tags=all_tags
        )
        self.run_id = run.info.run_id
        log_data_inputs(self.run_id, tracking.root, tracking.splits_csv)
        self.log_params(tracking.params)

    def log_synthetic(
        self, root: Path | str, files: list[str], generator: str, labels: list[str]
    ) -> None:
        """The synthetic images this run trains on, as a dataset input (context synthetic)."""
        if not self.enabled or not files:
            return
        item = synthetic_input(root, files, generator, labels)
        self.client.log_inputs(self.run_id, datasets=[item.to_mlflow()])

    def log_params(self, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in values.items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in values.items()
            if v is not None and math.isfinite(v)  # NaN is not a useful MLflow point
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, str(v))

    def log_model(self, model: Any, input_example: Any, serialization_format: str) -> None:
        """The model, pytorch flavour, with signature/input example and explicit requirements.

        ``serialization_format`` is ``train.log_model_format``: ``pt2`` (torch.export) never runs
        code when loaded but costs seconds per run on CPU; ``pickle`` is for a store you trust
        (the served model is the ONNX export either way).
        """
        if not self.enabled:
            return
        import mlflow
        import timm
        import torch

        reqs = [f"torch=={torch.__version__.split('+')[0]}", f"timm=={timm.__version__}"]
        pytorch_logger = logging.getLogger("mlflow.pytorch")
        level = pytorch_logger.level
        if serialization_format == "pickle":  # chosen in params.yaml: no warning in every run
            pytorch_logger.setLevel(logging.ERROR)
        try:
            with mlflow.start_run(run_id=self.run_id):
                mlflow.pytorch.log_model(
                    model,
                    name="model",
                    input_example=input_example,
                    pip_requirements=reqs,
                    serialization_format=serialization_format,
                )
        finally:
            pytorch_logger.setLevel(level)
        self.client.update_run(self.run_id, status="RUNNING")  # start_run's exit finished it

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self.client.set_terminated(self.run_id, status)


def log_to_runs(run_ids: list[str], metrics: dict[str, float], files: list[Path]) -> None:
    """Log evaluation results to existing runs (e.g. test metrics and the report to a parent)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, 0)
        for k, v in metrics.items()
        if v is not None and math.isfinite(v)
    ]
    for run_id in run_ids:
        for i in range(0, len(items), 1000):
            client.log_batch(run_id, metrics=items[i : i + 1000])
        for f in files:
            client.log_artifact(run_id, str(f), "evaluation")


EVALUATION_ROLE = "evaluation"  # the parent of one evaluate stage's runs
SETTING_ROLE = "setting"  # one strategy x architecture under it
SETTING_TAG = "lusaug.setting"


def _find(client: Any, exp_id: str, query: str) -> str | None:
    found = client.search_runs(
        [exp_id], filter_string=query, order_by=["attributes.start_time ASC"]
    )
    return found[0].info.run_id if found else None


def log_evaluation(
    uri: str,
    key: str,
    settings: dict[str, dict[str, Any]],
    parent: dict[str, Any],
    files: list[Path],
    root: Path | str = ".",
) -> tuple[str, dict[str, str]]:
    """The evaluation in MLflow: a parent run ``evaluate-<key>`` (role ``evaluation``) with the
    study's headline metrics, tags and files, and one child per setting (role ``setting``) with
    its metrics, so the UI's chart and compare views show the settings side by side.

    Args:
        uri: the tracking URI.
        key: group key (the training runs' parent's, so both parents belong to one repro).
        settings: setting name -> {"tags": {...}, "metrics": {...}}.
        parent: {"tags": {...}, "metrics": {...}} of the parent run.
        files: artifacts of the parent (under ``evaluation/``).
        root: the repository (its git commit and data hash become tags).

    Returns:
        The parent's run id and each setting's child run id. A re-run with the same key logs to
        the same runs (the newest value of a metric is the one the UI shows).
    """
    from mlflow.tracking import MlflowClient

    exp_id = setup_experiment("classifiers", uri, root)
    client = MlflowClient()
    base = standard_tags(root, **{GROUP_TAG: key, "dvc_stage": dvc_stage() or "evaluate"})
    query = f"tags.`{GROUP_TAG}` = '{key}' and tags.`{ROLE_TAG}` = '{EVALUATION_ROLE}'"
    parent_id = _find(client, exp_id, query)
    if parent_id is None:
        tags = {**base, ROLE_TAG: EVALUATION_ROLE}
        parent_id = client.create_run(exp_id, run_name=f"evaluate-{key}", tags=tags).info.run_id
    _log(client, parent_id, parent["metrics"], parent["tags"])
    for f in files:
        client.log_artifact(parent_id, str(f), "evaluation")
    client.set_terminated(parent_id, "FINISHED")
    children = {}
    for name, entry in settings.items():
        query = f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{SETTING_TAG}` = '{name}'"
        run_id = _find(client, exp_id, query)
        if run_id is None:
            tags = {
                **base,
                ROLE_TAG: SETTING_ROLE,
                SETTING_TAG: name,
                "mlflow.parentRunId": parent_id,
            }
            run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        _log(client, run_id, entry["metrics"], entry["tags"])
        client.set_terminated(run_id, "FINISHED")
        children[name] = run_id
    return parent_id, children


def _log(client: Any, run_id: str, metrics: dict[str, float], tags: dict[str, Any]) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, 0)
        for k, v in metrics.items()
        if v is not None and math.isfinite(v)
    ]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])
    tag_items = [RunTag(k, str(v)) for k, v in tags.items()]
    for i in range(0, len(tag_items), 100):
        client.log_batch(run_id, tags=tag_items[i : i + 100])
