"""Stage ``encoder@k``: the fold's real-trained classifier, whose features are the fidelity space.

It is one classifier run of the study (``filter.encoder.strategy`` on real frames only, an
architecture of ``train.architectures``), so the space separates the classes exactly as well as
that classifier does; its validation balanced accuracy is reported beside every distance, and
the same network gives the recognition rate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from lusaug.core.config import BaseParams, EncoderParams, MlflowParams, TrainParams
from lusaug.core.mlflow_store import log_data_inputs
from lusaug.core.utils import write_json
from lusaug.generators.fidelity import FeatureSpace, recognition
from lusaug.generators.frame_io import check_validation, class_frames, load_frames, read_splits
from lusaug.generators.stages.common import set_threads, setup_mlflow, tags
from lusaug.models.run_files import FILES
from lusaug.models.train import FoldData, RunSpec, prepare_run, train_classifier

logger = logging.getLogger(__name__)

CHECKPOINT = FILES["checkpoint"]  # the classifier's weights inside the encoder folder
CI = 0.95  # interval level of the encoder's own rare-class recognition rate


def train_reference_classifier(
    base: BaseParams,
    train: TrainParams,
    splits_csv: Path | str,
    out_dir: Path | str,
    encoder: EncoderParams,
    progress: bool,
) -> Any:
    """The fold's real-data classifier, trained exactly as ``train@<fold>`` trains that run."""
    data = FoldData.load(splits_csv, base)
    spec = RunSpec(encoder.strategy, encoder.architecture, encoder.seed)
    setup = prepare_run(spec, data, train, base)
    return train_classifier(setup, out_dir, train, base.classes, progress=progress)


def run_encoder(
    splits_csv: Path | str,
    out_dir: Path | str,
    metrics_json: Path | str,
    base: BaseParams,
    train: TrainParams,
    encoder: EncoderParams,
    mlflow_cfg: MlflowParams,
    threads: int = 0,
    validation_json: Path | str | None = None,
    fold: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the fold's reference classifier into ``out_dir``; write and return its summary."""
    check_validation(validation_json)
    set_threads(threads)
    out_dir = Path(out_dir)
    result = train_reference_classifier(base, train, splits_csv, out_dir, encoder, progress)
    space = FeatureSpace.load(out_dir / CHECKPOINT)
    splits = read_splits(splits_csv)
    val_rare = load_frames(
        class_frames(splits, base.target_class, "val"), splits_csv, base.image_size
    )
    target = base.classes.index(base.target_class)
    rare = recognition(space.predict(val_rare), target, CI)
    m = result.val_metrics
    summary = {
        "fold": fold,
        "strategy": encoder.strategy,
        "architecture": encoder.architecture,
        "seed": encoder.seed,
        "num_features": int(space.features(val_rare[:1]).shape[1]) if len(val_rare) else None,
        "val_balanced_accuracy": m.get("balanced_accuracy"),
        "val_macro_f1": m.get("f1_macro"),
        "val_accuracy": m.get("accuracy"),
        "val_recognition_rare": rare,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 2),
        "checkpoint": CHECKPOINT,
        "note": "the fold's real-trained classifier: its penultimate layer is the feature space "
        "of KID/PRDC/memorisation and its predictions give the recognition rate; validation "
        "split only (the test split is never read)",
    }
    setup_mlflow(mlflow_cfg)
    with mlflow.start_run(run_name="encoder") as run:
        mlflow.set_tags(tags(fold, stage="encoder", strategy=encoder.strategy))
        log_data_inputs(run.info.run_id, ".", splits_csv)  # lineage: data + fold split
        mlflow.log_params({"strategy": encoder.strategy, "architecture": encoder.architecture})
        mlflow.log_metrics(
            {k: float(v) for k, v in summary.items() if isinstance(v, float) and np.isfinite(v)}
        )
        if rare["rate"] is not None:
            mlflow.log_metric("val_recognition_rare", rare["rate"])
    write_json(metrics_json, summary)
    logger.info("encoder: val balanced accuracy %s", summary["val_balanced_accuracy"])
    return summary
