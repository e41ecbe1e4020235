"""Stage ``register``: the final model becomes a new ``lus-classifier`` version (alias ``candidate``).

What and how, in one place: :func:`run` reads the final model's candidate file
(``models/final/candidate.json``), writes its model card and calls :func:`register_checkpoint`,
the generic step: "register this checkpoint with these tags
(validation metrics and intervals, provenance) and this model card". It converts the checkpoint
to ONNX (:func:`~lusaug.export.onnx_export.export_onnx`), logs it as the models-from-code pyfunc
(:func:`~lusaug.export.mlflow_model.log_onnx_pyfunc`) in a ``register`` run, and hands the
model URI to the registry (:func:`lusaug.tracking.registration.register_version`), which gives
it ``register.alias`` through the audited, crash-safe alias move. The same checkpoint with the
same exporter settings and frame geometry (:func:`export_key`) reuses its version. What it
registered goes to ``models/registered.json``, which the ``export`` stage verifies.

Lineage: the ``register`` run logs its data (``data/raw`` and the split file, digests = their
DVC hashes) as dataset inputs; the version's run is that run, and its tags name the training
run, both hashes and the git commit. The model card, written from those tags, is the version's
description and ``model_card.md`` among the logged model's artifacts (and the run's).

The registry's own mechanisms (versions, aliases, history, lock, gates) are
:mod:`lusaug.tracking`; the ONNX conversion and the pyfunc are :mod:`lusaug.export`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from lusaug.core.config import (
    BaseParams,
    ExportParams,
    FramesParams,
    MlflowParams,
    RegisterParams,
)
from lusaug.core.mlflow_store import log_data_inputs, setup_experiment, standard_tags
from lusaug.core.utils import sha256_file, write_execution, write_json
from lusaug.export.mlflow_model import log_onnx_pyfunc
from lusaug.export.onnx_export import export_onnx
from lusaug.models.classifier import load_classifier
from lusaug.tracking.card import CARD_FILE, cv_record, fmt_metric, model_card, split_counts
from lusaug.tracking.registration import (
    claim_alias,
    find_version,
    metric_tags,
    register_version,
)
from lusaug.tracking.selection import provenance_tags, read_validation_runs, select_winner
from lusaug.tracking.versions import PARITY_TAG

logger = logging.getLogger(__name__)

ONNX_FILE = "classifier.onnx"
EXPORT_KEY_TAG = "export_key"
EXPORT_KEY_CHARS = 32  # of the sha256 hex digest: plenty to tell exports apart


@dataclass(frozen=True)
class RegisterPaths:
    candidate: Path  # models/final/candidate.json (the final model and its validation metrics)
    splits: Path  # data/splits/fold-final.csv (the model card's split table; a dataset input)
    registered: Path  # models/registered.json (what was registered, for `export`)
    test: Path | None = None  # metrics/test.json (the card's cross-validated estimate)
    comparison: Path | None = None  # metrics/comparison.json (the card's verdicts)


@dataclass(frozen=True)
class NewVersion:
    """What a registered version is known by."""

    run_name: str  # the registered model's run (``final-...``): ONNX metadata, tags
    # validation metrics with their interval bounds (``val_f1_macro``, ``val_f1_macro_lo``, ...):
    # version tags (the gates read them) and run metrics
    metrics: Mapping[str, float]
    tags: Mapping[str, str]  # provenance (run, strategy, architecture, git, data hash)
    # the model card (Markdown), or a function of the version's final tags (with the register
    # run id and the data hashes) that writes it: the description and ``model_card.md``
    card: str | Callable[[Mapping[str, str]], str]
    # the frames stage's border trimming (``auto_crop_black``, ``black_threshold``): it travels
    # in the ONNX metadata so serving trims alike
    frame_geometry: Mapping[str, Any] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)  # of the MLflow ``register`` run


def export_key(checkpoint_sha: str, export_cfg: ExportParams, geometry: Mapping[str, Any]) -> str:
    """Identity of a registered artifact: same weights, exporter settings and frame geometry."""
    spec = {
        "checkpoint": checkpoint_sha,
        "opset": export_cfg.opset,
        "dynamo": export_cfg.dynamo,
        "geometry": {k: str(v) for k, v in sorted(geometry.items())},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:EXPORT_KEY_CHARS]


def register_checkpoint(
    checkpoint: Path | str,
    cfg: RegisterParams,
    export_cfg: ExportParams,
    new: NewVersion,
    *,
    root: Path | str = ".",
    splits_csv: Path | str | None = None,
) -> dict[str, Any]:
    """Register ``checkpoint`` as an ONNX pyfunc version of ``cfg.model_name`` with ``cfg.alias``.

    Args:
        checkpoint: The classifier checkpoint (``models/.../model.pt``).
        cfg: The ``register`` section (model name, alias, selection metric).
        export_cfg: The ``export`` section (opset, exporter).
        new: What the version is known by (run name, metrics, tags, card, frame geometry).
        root: The repository root (``data.dvc``, git) for the run's dataset inputs.
        splits_csv: The split file the model was trained on (a dataset input of the run).

    Returns:
        ``name``, ``version``, ``alias``, ``reused``, ``model_uri``, ``checkpoint_sha256``,
        ``onnx_sha256``.
    """
    run_name, metrics, tags, card = new.run_name, new.metrics, new.tags, new.card
    geometry = dict(new.frame_geometry)
    ckpt_sha = sha256_file(checkpoint)
    key = export_key(ckpt_sha, export_cfg, geometry)
    existing = find_version(cfg.model_name, EXPORT_KEY_TAG, key)
    reason = f"registered {run_name}"
    if existing is not None:
        version, onnx_sha = str(existing.version), existing.tags.get("onnx_sha256", "")
        logger.info("checkpoint already registered as version %s; reusing it", version)
        _refresh_card(existing, card)
        claim_alias(cfg.model_name, cfg.alias, version, reason=reason)
    else:
        model, meta = load_classifier(checkpoint)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(
                model,
                meta,
                Path(tmp) / ONNX_FILE,
                export_cfg,
                registered_model=cfg.model_name,
                run_name=run_name,
                checkpoint_sha256=ckpt_sha,
                selection_metric=cfg.metric,
                **geometry,
            )
            onnx_sha = sha256_file(onnx_path)
            run_tags = {**new.run_tags, "run_name": run_name}
            with mlflow.start_run(run_name="register", tags=run_tags) as active:
                run_id = active.info.run_id
                lineage = log_data_inputs(run_id, root, splits_csv)
                mlflow.log_params({"register.metric": cfg.metric, "winner": run_name})
                mlflow.log_metrics(dict(metrics))
                info = log_onnx_pyfunc(onnx_path)
                version_tags = {
                    **tags,
                    **lineage,
                    "register_run_id": run_id,
                    **metric_tags(metrics),
                    "checkpoint_sha256": ckpt_sha,
                    "onnx_sha256": onnx_sha,
                    EXPORT_KEY_TAG: key,
                    PARITY_TAG: "pending",  # the export stage verifies parity: passed | failed
                }
                card_text = card(version_tags) if callable(card) else card
                _log_card(card_text, info.model_id, Path(tmp))
        version = register_version(
            info.model_uri,
            cfg.model_name,
            tags=version_tags,
            description=card_text,
            alias=cfg.alias,
            reason=reason,
        )
    return {
        "name": cfg.model_name,
        "version": version,
        "alias": cfg.alias,
        "reused": existing is not None,
        "model_uri": f"models:/{cfg.model_name}/{version}",
        "checkpoint_sha256": ckpt_sha,
        "onnx_sha256": onnx_sha,
    }


def _refresh_card(existing: Any, card: str | Callable[[Mapping[str, str]], str]) -> None:
    """A reused version's card brought up to date (its verdicts may have changed since, e.g.
    with evaluate.primary): the description and the logged model's ``model_card.md``."""
    text = card(dict(existing.tags)) if callable(card) else card
    if text == (existing.description or ""):
        return
    client = mlflow.MlflowClient()
    client.update_model_version(existing.name, existing.version, description=text)
    model_id = existing.source.removeprefix("models:/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CARD_FILE
        path.write_text(text)
        client.log_model_artifact(model_id, str(path))
    logger.info("version %s: model card brought up to date", existing.version)


def _log_card(card: str, model_id: str, tmp: Path) -> None:
    """The card as ``model_card.md`` of the logged model (the version's files) and of the run."""
    path = tmp / CARD_FILE
    path.write_text(card)
    mlflow.MlflowClient().log_model_artifact(model_id, str(path))
    mlflow.log_artifact(str(path))


def _read(path: Path | None) -> dict[str, Any]:
    """A JSON file of evaluate's ({} when absent: the card then says less)."""
    if path is None or not Path(path).exists():
        logger.warning("register: %s not found; the model card leaves its part out", path)
        return {}
    return json.loads(Path(path).read_text())


def run(
    paths: RegisterPaths,
    base: BaseParams,
    frames: FramesParams,
    cfg: RegisterParams,
    export_cfg: ExportParams,
    mlflow_cfg: MlflowParams,
    *,
    root: Path | str = ".",
) -> dict[str, Any]:
    """Register the final model of ``paths.candidate``; write and return ``registered.json``.

    ``base`` gives the class names, ``frames`` the border trimming that travels in the ONNX
    metadata (serving trims alike), ``cfg`` the model name, alias and metric, ``export_cfg`` the
    exporter. Whether the version was reused goes to the file's execution record.
    """
    setup_experiment("classifiers", mlflow_cfg.tracking_uri, root)
    winner = select_winner(read_validation_runs(paths.candidate), cfg.metric)
    ckpt = winner.checkpoint_path(root)
    logger.info("winner by %s: %s (%s)", cfg.metric, winner.name, fmt_metric(winner, cfg.metric))
    std = standard_tags(root, dvc_stage="register")
    tags = provenance_tags(winner, cfg, std)
    classes = list(base.classes)
    counts = split_counts(paths.splits)

    setting = f"{winner.entry.get('strategy')}-{winner.entry.get('architecture')}"
    cv = cv_record(setting, _read(paths.test), _read(paths.comparison)) if paths.test else None

    def card(version_tags: Mapping[str, str]) -> str:
        return model_card(winner, cfg, counts, classes, dict(version_tags), cv)

    geometry = {
        "auto_crop_black": frames.auto_crop_black,
        "black_threshold": frames.black_threshold,
    }
    new = NewVersion(winner.name, winner.validation_metrics(), tags, card, geometry, std)
    reg = register_checkpoint(ckpt, cfg, export_cfg, new, root=root, splits_csv=paths.splits)
    lo, hi = winner.interval(cfg.metric)
    reused = reg.pop("reused")
    registered = {
        **reg,
        "run_name": winner.name,
        "checkpoint": str(winner.entry.get("checkpoint")),
        "metric": cfg.metric,
        "value": winner.value(cfg.metric),
        "interval": [lo, hi],
    }
    write_json(paths.registered, registered)
    write_execution(paths.registered, {"reused": reused})
    return {**registered, "reused": reused}
