"""One trial: train a classifier of the fold with the trial's point, score it on validation.

The search space: a log-uniform loss weight per class and the learning rate; for
``synthetic_tuned-<G>`` also the study's std/entropy filter thresholds, applied to G's candidates
through the filter stage's own per-candidate table (:func:`lusaug.generators.filters.kept_files`),
so a trial keeps exactly what ``filter@G`` would keep at those thresholds. Each trial reports
validation ``tune.metric`` after every epoch (median pruning) and returns it at the best epoch;
the test split is never read. An optional floor on the rare class's validation recall is a
constraint; the best *feasible* trial wins.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from lusaug.core.config import BaseParams, Strategy, TrainParams, TuneParams
from lusaug.core.errors import LusaugError
from lusaug.generators.filters import FilterThresholds, kept_files, load_thresholds
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.strategies import GENERATOR_METRICS, FoldInputs, Tuned
from lusaug.models.train_loop import train_classifier

RECALL_CONSTRAINT = "target_recall_floor"
FILTER_TABLE = "filter.csv"  # data/synthetic/fold-<k>/<G>/filter.csv, written by filter@G


class TuneError(LusaugError, ValueError):
    """A tuning configuration or input that cannot work; the message says what to change."""


def _range(values: list[float], name: str) -> tuple[float, float]:
    if len(values) != 2 or not 0 < values[0] < values[1]:
        raise TuneError(f"tune.{name} must be [low, high] with 0 < low < high, got {values}")
    return float(values[0]), float(values[1])


def suggest(trial: Any, cfg: TuneParams, classes: list[str], thresholds: bool) -> dict[str, Any]:
    """The trial's point (parameter names are what the tuned file maps from)."""
    lo, hi = _range(cfg.class_weight_range, "class_weight_range")
    point: dict[str, Any] = {
        "class_weights": {c: trial.suggest_float(f"w_{c}", lo, hi, log=True) for c in classes},
        "lr": trial.suggest_float("lr", *_range(cfg.lr_range, "lr_range"), log=True),
    }
    if thresholds:
        point["filter"] = {
            "min_std": trial.suggest_float("min_std", *_range(cfg.min_std_range, "min_std_range")),
            "min_entropy": trial.suggest_float(
                "min_entropy", *_range(cfg.min_entropy_range, "min_entropy_range")
            ),
        }
    return point


def filter_table(inputs: FoldInputs, generator: str) -> pd.DataFrame:
    """The fold's per-candidate filter table of ``generator``."""
    path = Path(inputs.synthetic_dir or ".") / generator / FILTER_TABLE
    if not path.exists():
        raise TuneError(f"{path} not found: run `dvc repro` (filter@<fold>-{generator} writes it)")
    return pd.read_csv(path)


def fold_thresholds(inputs: FoldInputs, generator: str) -> FilterThresholds:
    """The thresholds filter@G used in this fold (the sharpness band, blocked or not)."""
    path = Path(inputs.generator_metrics or ".") / GENERATOR_METRICS.format(generator=generator)
    if not path.exists():
        raise TuneError(f"{path} not found: run `dvc repro` (filter@<fold>-{generator} writes it)")
    return load_thresholds(path)


def kept_at(table: pd.DataFrame, base: FilterThresholds, point: dict[str, Any]) -> list[str]:
    """Candidate files filter@G keeps at the point's std/entropy thresholds (everything else as
    the fold's filter had it; memorised ones never)."""
    f = point["filter"]
    thresholds = dataclasses.replace(base, min_std=f["min_std"], min_entropy=f["min_entropy"])
    return sorted(kept_files(table, thresholds))


class Objective:
    """Train one classifier of the fold per trial (validation only) and return ``tune.metric``."""

    def __init__(
        self,
        strategy: Strategy,
        data: FoldData,
        train: TrainParams,
        base: BaseParams,
        cfg: TuneParams,
        inputs: FoldInputs,
    ) -> None:
        self.strategy, self.data, self.base, self.cfg, self.inputs = (
            strategy,
            data,
            base,
            cfg,
            inputs,
        )
        self.train = dataclasses.replace(train, epochs=cfg.epochs or train.epochs)
        self.table, self.thresholds = None, None
        if strategy.kind == "synthetic_tuned":
            self.table = filter_table(inputs, strategy.generator)
            self.thresholds = fold_thresholds(inputs, strategy.generator)

    def __call__(self, trial: optuna.Trial) -> float:
        cfg, classes = self.cfg, self.base.classes
        point = suggest(trial, cfg, classes, self.table is not None)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        kept = None
        if self.table is not None:
            kept = kept_at(self.table, self.thresholds, point)
            trial.set_user_attr("synthetic_kept", len(kept))
            trial.set_user_attr("kept_files", kept)
            if not kept:
                raise optuna.TrialPruned("no synthetic candidate passes these thresholds")
        tuned = Tuned(point["class_weights"], point["lr"], cfg.architecture, kept)

        def report(epoch: int, row: dict[str, float]) -> None:
            if cfg.metric not in row:
                raise TuneError(
                    f"tune.metric {cfg.metric!r} is not reported per epoch; "
                    f"available: {sorted(k for k in row if k.startswith('val_'))}"
                )
            trial.report(float(row[cfg.metric]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        spec = RunSpec(self.strategy.name, cfg.architecture, self.base.seed)
        setup = prepare_run(spec, self.data, self.train, self.base, self.inputs, tuned)
        with tempfile.TemporaryDirectory(prefix=f"tune-trial{trial.number}-") as tmp:
            result = train_classifier(
                setup, Path(tmp), self.train, classes, on_epoch_end=report, progress=False
            )
        best = result.history.loc[result.history["epoch"] == result.best_epoch, cfg.metric]
        value = float(best.iloc[0])
        target = self.base.target_class
        recall = result.val_metrics.get(f"recall_{target}")
        if recall is not None:
            trial.set_user_attr(f"val_recall_{target}", float(recall))
        if cfg.viral_recall_floor > 0:
            if recall is None:
                raise TuneError(f"no validation recall_{target}: cannot apply the recall floor")
            trial.set_constraint(RECALL_CONSTRAINT, cfg.viral_recall_floor - float(recall))
        return value
