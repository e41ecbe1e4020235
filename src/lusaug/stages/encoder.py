"""Stage ``encoder@k``: the fold's real-trained classifier, whose features are the fidelity space.

It is one classifier run of the study (``filter.encoder.strategy`` on real frames only, an
architecture of ``train.architectures``), so the space separates the classes exactly as well as
that classifier does; its validation balanced accuracy is reported beside every distance, and
the same network gives the recognition rate. Only the filter stages read it: with
``generate.enabled`` empty the stage trains nothing and its outputs say why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from lusaug.core.config import BaseParams, EncoderParams, MlflowParams, TrainParams
from lusaug.core.mlflow_store import log_data_inputs
from lusaug.core.utils import atomic_path, write_execution, write_json
from lusaug.generators.fidelity import ENCODER_CHECKPOINT, FeatureSpace, recognition
from lusaug.generators.frame_io import check_validation, class_frames, load_frames, read_splits
from lusaug.generators.run_context import set_threads, setup_mlflow, tags
from lusaug.models.run_files import FILES, TrainResult
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.train_loop import train_classifier

logger = logging.getLogger(__name__)

CI = 0.95  # interval level of the encoder's own rare-class recognition rate


@dataclass(frozen=True)
class EncoderPaths:
    splits: Path  # data/splits/fold-<k>.csv
    out: Path  # models/fold-<k>/encoder
    metrics: Path  # metrics/fold-<k>/encoder.json
    validation: Path | None = None  # metrics/validation.json (must have passed)


def skip_reason(enabled: list[str]) -> str | None:
    """Why nothing would read the encoder (None when a filter stage does)."""
    if enabled:
        return None
    return "generate.enabled is empty: no filter stage reads the fidelity space"


def _skip(paths: EncoderPaths, fold: int | str | None, reason: str) -> dict[str, Any]:
    summary = {"fold": fold, "trained": False, "skipped": reason}
    with atomic_path(paths.out, is_dir=True) as tmp:
        write_json(tmp / FILES["skipped"], summary)
    write_json(paths.metrics, summary)
    logger.info("encoder: skipped (%s)", reason)
    return summary


def train_reference_classifier(
    paths: EncoderPaths,
    base: BaseParams,
    train: TrainParams,
    encoder: EncoderParams,
    progress: bool,
) -> TrainResult:
    """The fold's real-data classifier, trained exactly as ``train@<fold>`` trains that run."""
    data = FoldData.load(paths.splits, base)
    spec = RunSpec(encoder.strategy, encoder.architecture, encoder.seed)
    setup = prepare_run(spec, data, train, base)
    return train_classifier(setup, paths.out, train, base.classes, progress=progress)


def run(
    paths: EncoderPaths,
    base: BaseParams,
    train: TrainParams,
    encoder: EncoderParams,
    mlflow_cfg: MlflowParams,
    *,
    enabled: list[str],
    threads: int = 0,
    fold: int | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the fold's reference classifier into ``paths.out``; write and return its summary.

    ``enabled`` is ``generate.enabled`` (nothing trains when it is empty); ``threads`` is
    ``generate.threads``.
    """
    check_validation(paths.validation)
    reason = skip_reason(enabled)
    if reason is not None:
        return _skip(paths, fold, reason)
    set_threads(threads)
    result = train_reference_classifier(paths, base, train, encoder, progress)
    space = FeatureSpace.from_encoder(paths.out)
    splits = read_splits(paths.splits)
    val_rare = load_frames(
        class_frames(splits, base.target_class, "val"), paths.splits, base.image_size
    )
    target = base.classes.index(base.target_class)
    rare = recognition(space.predict(val_rare), target, CI)
    m = result.val_metrics
    summary = {
        "fold": fold,
        "trained": True,
        "strategy": encoder.strategy,
        "architecture": encoder.architecture,
        "seed": encoder.seed,
        "num_features": int(space.features(val_rare[:1]).shape[1]) if len(val_rare) else None,
        "val_balanced_accuracy": m.get("balanced_accuracy"),
        "val_macro_f1": m.get("f1_macro"),
        "val_accuracy": m.get("accuracy"),
        "val_recognition_rare": rare,
        "best_epoch": result.best_epoch,
        "checkpoint": ENCODER_CHECKPOINT,
        "note": "the fold's real-trained classifier: its penultimate layer is the feature space "
        "of KID/PRDC/memorisation and its predictions give the recognition rate; validation "
        "split only (the test split is never read)",
    }
    setup_mlflow(mlflow_cfg)
    with mlflow.start_run(run_name="encoder") as active:
        mlflow.set_tags(tags(fold, stage="encoder", strategy=encoder.strategy))
        log_data_inputs(active.info.run_id, ".", paths.splits)  # lineage: data + fold split
        mlflow.log_params({"strategy": encoder.strategy, "architecture": encoder.architecture})
        mlflow.log_metrics(
            {k: float(v) for k, v in summary.items() if isinstance(v, float) and np.isfinite(v)}
        )
        mlflow.log_metric("seconds", result.seconds)
        if rare["rate"] is not None:
            mlflow.log_metric("val_recognition_rare", rare["rate"])
    write_json(paths.metrics, summary)
    execution = {"seconds": round(result.seconds, 2), "mlflow_run_id": active.info.run_id}
    write_execution(paths.metrics, execution)
    logger.info("encoder: val balanced accuracy %s", summary["val_balanced_accuracy"])
    return summary
