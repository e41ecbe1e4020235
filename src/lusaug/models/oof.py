"""Out-of-fold predictions: every frame predicted once, by the model of the fold that tests it.

For each planned run (strategy x architecture x seed) :func:`load_oof` loads the run's
checkpoint of every fold, predicts that fold's test frames (the only place test frames are read)
and stacks the folds into one pooled prediction table. It also pools each fold's validation
predictions (written by training), which is what the final model is chosen on. A run that a
fold skipped (its generator was blocked) makes the whole setting unavailable, with the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lusaug.core.config import BaseParams, TrainParams
from lusaug.core.utils import read_execution
from lusaug.data.split import fold_file
from lusaug.models.classifier import load_classifier
from lusaug.models.frame_sets import DataError, FrameSet, load_split, predict_proba
from lusaug.models.run_files import FILES
from lusaug.models.run_setup import planned_runs

logger = logging.getLogger(__name__)

FOLD_DIR = "fold-{fold}"  # models/classifiers/fold-<k>/<run>
PRED_COLUMNS = ["path", "fold", "patient_id", "video_id", "label"]


def fold_dir(models_dir: Path | str, fold: int) -> Path:
    return Path(models_dir) / FOLD_DIR.format(fold=fold)


@dataclass
class HeldOutFrames:
    """Every fold's test frames (read once), stacked in fold order."""

    frames: pd.DataFrame  # PRED_COLUMNS
    labels: np.ndarray  # class index per frame
    images: dict[int, FrameSet]  # fold -> its test frames

    @classmethod
    def load(cls, splits_dir: Path | str, folds: list[int], base: BaseParams) -> HeldOutFrames:
        images, parts = {}, []
        for k in folds:
            fs = load_split(Path(splits_dir) / fold_file(k), "test", base.classes, base.image_size)
            images[k] = fs
            parts.append(fs.frames.assign(fold=k)[PRED_COLUMNS])
        frames = pd.concat(parts, ignore_index=True)
        dup = frames["path"].duplicated()
        if dup.any():
            raise DataError(
                f"{int(dup.sum())} frame(s) are test frames of two folds (e.g. "
                f"{frames.loc[dup, 'path'].iloc[0]}): the split is not a partition; re-run split"
            )
        labels = np.concatenate([images[k].labels.numpy() for k in folds])
        return cls(frames=frames, labels=labels, images=images)


@dataclass
class RunOOF:
    """One run (strategy x architecture x seed) over all folds."""

    name: str
    strategy: str
    arch: str
    seed: int
    test_prob: np.ndarray | None  # (N_frames, K) pooled out-of-fold; None when skipped
    val: pd.DataFrame | None  # every fold's val_predictions.csv, with a fold column
    history: dict[int, pd.DataFrame] = field(default_factory=dict)
    info: dict[int, dict] = field(default_factory=dict)  # fold -> run.json + execution record
    skipped: dict[int, str] = field(default_factory=dict)  # fold -> reason

    @property
    def available(self) -> bool:
        return not self.skipped


def _read_val(run_dir: Path, fold: int) -> pd.DataFrame:
    return pd.read_csv(
        run_dir / FILES["val_predictions"],
        keep_default_na=False,
        dtype={"video_id": str, "patient_id": str},
    ).assign(fold=fold)


def load_oof(
    models_dir: Path | str,
    test: HeldOutFrames,
    folds: list[int],
    train: TrainParams,
    base: BaseParams,
    batch_size: int,
) -> list[RunOOF]:
    """Every planned run's pooled out-of-fold test probabilities and validation predictions."""
    out = []
    specs = planned_runs(train)
    with tqdm(total=len(specs) * len(folds), desc="evaluate: test predictions") as bar:
        for spec in specs:
            run = RunOOF(spec.name, spec.strategy, spec.arch, spec.seed, None, None)
            probs, vals = [], []
            for k in folds:
                bar.update(1)
                run_dir = fold_dir(models_dir, k) / spec.name
                if (run_dir / FILES["skipped"]).exists():
                    run.skipped[k] = json.loads((run_dir / FILES["skipped"]).read_text())["reason"]
                    continue
                missing = [
                    FILES[f]
                    for f in ("checkpoint", "run", "val_predictions", "history")
                    if not (run_dir / FILES[f]).exists()
                ]
                if missing or (run_dir / FILES["last"]).exists():
                    raise DataError(
                        f"run {spec.name} of fold {k} is unfinished (missing {missing} in "
                        f"{run_dir}); run `dvc repro` (stage train@{k})"
                    )
                model, meta = load_classifier(run_dir / FILES["checkpoint"])
                if meta.classes != base.classes or meta.image_size != base.image_size:
                    raise DataError(
                        f"{run_dir} was trained for {meta.classes} at {meta.image_size} px, "
                        f"params say {base.classes} at {base.image_size} px: run `dvc repro`"
                    )
                images = test.images[k].images
                with torch.no_grad():
                    probs.append(predict_proba(model, images, meta.mean, meta.std, batch_size))
                vals.append(_read_val(run_dir, k))
                run.history[k] = pd.read_csv(run_dir / FILES["history"])
                run.info[k] = {
                    **json.loads((run_dir / FILES["run"]).read_text()),
                    **read_execution(run_dir),  # MLflow ids (absent after a `dvc pull`)
                }
            if run.available:
                run.test_prob = np.concatenate(probs)
                run.val = pd.concat(vals, ignore_index=True)
            out.append(run)
    return out


def predictions_table(run: RunOOF, test: HeldOutFrames, classes: list[str]) -> pd.DataFrame:
    """The pooled out-of-fold predictions of one run: one row per frame."""
    assert run.test_prob is not None
    df = test.frames.copy()
    df["predicted"] = [classes[i] for i in run.test_prob.argmax(1)]
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = run.test_prob[:, j]
    return df
