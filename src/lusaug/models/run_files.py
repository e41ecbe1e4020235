"""The files a finished classifier run leaves in its folder, and the last phase that writes them.

:func:`finish_run` reloads the best weights, predicts the validation frames, writes the run's
files atomically (``last.pt`` is removed last: a folder without it is a finished run), logs the
validation results and the model to MLflow and closes the run. The files are a function of the
run's inputs (two runs on the same inputs write the same bytes); wall times and MLflow ids go to
the folder's execution record (``execution.json``), which DVC does not hash.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lusaug.core.config import TrainParams, as_flat_dict
from lusaug.core.utils import atomic_path, write_execution, write_json
from lusaug.models import plots
from lusaug.models.classifier import load_checkpoint
from lusaug.models.epochs import Loop, Progress
from lusaug.models.frame_sets import FrameSet, predict_proba, to_input
from lusaug.models.run_setup import RunSetup
from lusaug.models.statistics import point_metrics

if TYPE_CHECKING:
    from lusaug.models.mlflow_runs import TrainTracker

FILES = {
    "checkpoint": "model.pt",
    "last": "last.pt",
    "history": "history.csv",
    "val_predictions": "val_predictions.csv",
    "val_metrics": "val_metrics.json",
    "report": "classification_report.txt",
    "confusion": "val_confusion.png",
    "run": "run.json",
    "skipped": "skipped.json",  # a run that must not train, with the reason
}
EPOCH_SECONDS = "seconds"  # the history column of an epoch's wall time (MLflow only)
logger = logging.getLogger(__name__)
EXAMPLE_BATCH = 2  # an input example of batch 1 makes torch.export specialise the batch to 1


@dataclass
class TrainResult:
    run: str
    out_dir: Path
    checkpoint: Path
    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, float]
    history: pd.DataFrame
    mlflow_run_id: str | None
    seconds: float


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _val_predictions(
    val: FrameSet, prob: np.ndarray, pred: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """``val_predictions.csv``: each validation frame, its predicted class and probabilities."""
    preds = val.frames[["path", "video_id", "patient_id", "label"]].copy()
    preds["predicted"] = [classes[i] for i in pred]
    for k, c in enumerate(classes):
        preds[f"prob_{c}"] = prob[:, k]
    return preds


def _val_summary(
    setup: RunSetup,
    cfg: TrainParams,
    classes: list[str],
    epochs_run: int,
    best_epoch: int,
    metrics: dict[str, float],
) -> dict[str, Any]:
    """``val_metrics.json``: the run, what it trained on and its best weights' validation."""
    spec, plan = setup.spec, setup.plan
    return {
        "run": spec.name,
        "strategy": setup.strategy.name,
        "architecture": spec.arch,
        "seed": spec.seed,
        "fold": spec.fold,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "train_frames": dict(zip(classes, setup.counts.tolist(), strict=True)),
        "synthetic_frames": setup.n_synthetic,
        "loss_weights": plan.loss_weights,
        "oversample": plan.oversample,
        "lr": plan.lr if plan.lr is not None else cfg.lr,
        "tuned_on": setup.tuned_on,
        "val": metrics,
    }


def _run_info(setup: RunSetup, cfg: TrainParams, summary: dict[str, Any]) -> dict[str, Any]:
    """``run.json``: what was run and its fingerprint."""
    return {
        **{k: summary[k] for k in ("run", "strategy", "architecture", "seed", "fold")},
        "best_epoch": summary["best_epoch"],
        "model": setup.meta.model,
        "kwargs": setup.meta.kwargs,
        "checkpoint": FILES["checkpoint"],
        "fingerprint": setup.fingerprint,
        "params": {
            k: v for k, v in as_flat_dict(cfg).items() if not k.startswith("architectures.")
        },
    }


def finish_run(
    loop: Loop,
    setup: RunSetup,
    out_dir: Path,
    cfg: TrainParams,
    classes: list[str],
    done: Progress,
    tracker: TrainTracker,
    t0: float,
) -> TrainResult:
    """Best weights on validation -> the run's files, MLflow results; returns the result.

    ``done`` is where training stopped (its history and best epoch), ``t0`` when it started."""
    accelerator, model = loop.accelerator, loop.model
    history, best_epoch = done.history, done.best_epoch
    from sklearn.metrics import classification_report, confusion_matrix

    spec, meta, val = setup.spec, setup.meta, setup.val
    ckpt_path = out_dir / FILES["checkpoint"]
    net = accelerator.unwrap_model(model)
    net.load_state_dict(load_checkpoint(ckpt_path)["state_dict"])
    net.eval()
    hist = pd.DataFrame(history)
    epoch_seconds = hist.pop(EPOCH_SECONDS) if EPOCH_SECONDS in hist else pd.Series(dtype=float)
    if not accelerator.is_main_process:
        return TrainResult(
            spec.name, out_dir, ckpt_path, best_epoch, len(history), {}, hist, None, 0.0
        )
    prob = predict_proba(net, val.images, meta.mean, meta.std, cfg.eval_batch_size)
    y = val.labels.numpy()
    pred = prob.argmax(1)
    preds = _val_predictions(val, prob, pred, classes)
    metrics = point_metrics(y, prob, classes, val.frames["video_id"].to_numpy())
    seconds = time.perf_counter() - t0
    summary = _val_summary(setup, cfg, classes, len(history), best_epoch, metrics)
    report = classification_report(
        y, pred, labels=list(range(len(classes))), target_names=classes, zero_division=0, digits=3
    )
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    write_csv(hist, out_dir / FILES["history"])
    write_csv(preds, out_dir / FILES["val_predictions"])
    write_json(out_dir / FILES["val_metrics"], summary)
    with atomic_path(out_dir / FILES["report"]) as tmp:
        tmp.write_text(report)
    plots.save(
        plots.confusion_figure(cm, classes, f"{spec.name} (validation)"),
        out_dir / FILES["confusion"],
    )
    tracker.log_metrics({f"best_val_{k}": v for k, v in metrics.items()})
    tracker.log_metrics({"best_epoch": best_epoch, "train_seconds": seconds})
    tracker.log_artifact(out_dir / FILES["confusion"], "validation")
    tracker.log_artifact(out_dir / FILES["history"], "validation")
    tracker.log_text(report, "validation/classification_report.txt")
    if cfg.log_model:
        example = to_input(val.images[:EXAMPLE_BATCH], meta.mean, meta.std).numpy()
        tracker.log_model(net, example, cfg.log_model_format)
    write_json(out_dir / FILES["run"], _run_info(setup, cfg, summary))
    write_execution(
        out_dir,
        {
            "seconds": round(seconds, 2),
            "epoch_seconds": [round(float(x), 3) for x in epoch_seconds],
            "mlflow_run_id": tracker.run_id,
            "mlflow_parent_run_id": tracker.parent_run_id,
        },
    )
    tracker.finish("FINISHED")
    (out_dir / FILES["last"]).unlink(missing_ok=True)
    logger.info("finished %s in %.1f s", spec.name, time.perf_counter() - t0)
    return TrainResult(
        spec.name,
        out_dir,
        ckpt_path,
        best_epoch,
        len(history),
        metrics,
        hist,
        tracker.run_id,
        seconds,
    )
