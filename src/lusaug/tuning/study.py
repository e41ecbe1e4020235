"""Optuna study over per-class loss weights, learning rate and (optionally) the synthetic filter.

Each trial calls the one training function, :func:`lusaug.models.train.train_classifier`, with
strategy ``class_weights_tuned`` and the trial's weights (or ``synthetic-<G>`` when
``tune.filter_generator`` is set: the candidates that pass the trial's std/entropy thresholds,
via the generator issue's :func:`lusaug.generators.filters.quality_mask`), reports validation
``tune.metric`` after every epoch (MedianPruner) and returns it; the test split is never read.
An optional floor on the target class's validation recall is a constraint
(``trial.set_constraint``); the best *feasible* trial wins.

Storage: ``tune.storage`` is any Optuna RDB URL (``sqlite:///optuna.db`` by default, PostgreSQL
for many machines) or ``journal:<file>`` (JournalStorage, safest for several processes on one
disk). The study's name is ``tune.study_name`` plus a fingerprint of what a trial's score
depends on (:func:`objective_fingerprint`: the split, the settings the objective reads, the
filter table when thresholds are tuned). A re-run on the same inputs continues the study and adds
``tune.n_trials`` trials; a re-run after the data or the objective changed starts a new study
instead of mixing scores that cannot be compared (the old one stays in the storage). Several
workers (:func:`run_workers`) compute the same name, share one study and stop together.

MLflow: one parent run per study (its id is a study user attribute, so every worker and every
re-run nests under it) and one run per trial nested under it in the same experiment, written by
:class:`MlflowTrialCallback` (optuna-integration's MLflowCallback is deprecated and puts trials in
another experiment by default). The parent run gets the optimisation-history and
parameter-importance plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lusaug.config import Params, TuneParams
from lusaug.errors import LusaugError
from lusaug.utils import atomic_path

logger = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
RECALL_CONSTRAINT = "target_recall_floor"


class TuneError(LusaugError, ValueError):
    """A tuning configuration or input that cannot work; the message says what to change."""


# ----------------------------------------------------------------------------------- storage


def make_storage(url: str, root: Path | str = ".") -> Any:
    """``journal:<file>`` -> JournalStorage; anything else is an RDB URL (relative sqlite paths
    are made absolute against ``root`` so workers started elsewhere share the same file)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path = path if path.is_absolute() else Path(root).resolve() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{Path(root).resolve() / url.removeprefix('sqlite:///')}"
    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=120)


# Settings that decide how many trials run, where, and which point is tried next, but not what a
# given trial scores: changing them continues the study rather than starting a new one.
_NOT_IN_OBJECTIVE = {
    "base": {"workers", "profile"},
    "train": {
        "strategies",
        "tuned_strategies",
        "generators",
        "seeds",
        "log_model",
        "log_model_format",
    },
    "tune": {
        "study_name",
        "storage",
        "n_trials",
        "workers",
        "timeout_s",
        "sampler_seed",
        "n_startup_trials",
        "pruner_startup_trials",
        "pruner_warmup_epochs",
    },
}


def objective_fingerprint(
    params: Params, splits_csv: Path | str, synthetic_dir: Path | str = "data/synthetic"
) -> str:
    """sha256 of what a trial's score depends on: the split file (it holds every frame's sha1),
    the base/train/tune settings the objective reads and, when ``tune.filter_generator`` is set,
    that generator's per-candidate filter table."""
    settings = {
        section: {
            k: v for k, v in dataclasses.asdict(getattr(params, section)).items() if k not in skip
        }
        for section, skip in _NOT_IN_OBJECTIVE.items()
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(Path(splits_csv).read_bytes())
    if params.tune.filter_generator:
        table = Path(synthetic_dir) / params.tune.filter_generator / "filter.csv"
        digest.update(table.read_bytes() if table.exists() else b"no filter table")
    return digest.hexdigest()


def study_name(
    params: Params, splits_csv: Path | str, synthetic_dir: Path | str = "data/synthetic"
) -> str:
    """``<tune.study_name>-<fingerprint[:10]>``: same inputs, same study."""
    fingerprint = objective_fingerprint(params, splits_csv, synthetic_dir)
    return f"{params.tune.study_name}-{fingerprint[:10]}"


def open_study(cfg: TuneParams, storage: Any, name: str) -> Any:
    """Create or load (resume) study ``name``: seeded TPE, median pruning on per-epoch reports."""
    import optuna

    sampler = optuna.samplers.TPESampler(
        seed=cfg.sampler_seed, n_startup_trials=cfg.n_startup_trials
    )
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_epochs
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


# ---------------------------------------------------------------------------------- objective


def _range(values: list[float], name: str) -> tuple[float, float]:
    if len(values) != 2 or not 0 < values[0] < values[1]:
        raise TuneError(f"tune.{name} must be [low, high] with 0 < low < high, got {values}")
    return float(values[0]), float(values[1])


def suggest(trial: Any, cfg: TuneParams, classes: list[str]) -> dict[str, Any]:
    """The trial's point in the search space (parameter names are what tuned.yaml maps from)."""
    lo, hi = _range(cfg.class_weight_range, "class_weight_range")
    out: dict[str, Any] = {
        "class_weights": {c: trial.suggest_float(f"w_{c}", lo, hi, log=True) for c in classes},
        "lr": trial.suggest_float("lr", *_range(cfg.lr_range, "lr_range"), log=True),
    }
    if cfg.filter_generator:
        out["filter"] = {
            "min_std": trial.suggest_float("min_std", *_range(cfg.min_std_range, "min_std_range")),
            "min_entropy": trial.suggest_float(
                "min_entropy", *_range(cfg.min_entropy_range, "min_entropy_range")
            ),
        }
    return out


def filtered_synthetic(
    synthetic_dir: Path, generator: str, min_std: float, min_entropy: float, out_root: Path
) -> int:
    """``out_root/<G>/kept/`` = links to the candidates passing the thresholds (not memorised).

    Uses the filter stage's per-candidate table (``<G>/filter.csv``: std, entropy, memorised) and
    the generator issue's :func:`quality_mask`, so a trial filters exactly as ``filter@G`` would.
    """
    import pandas as pd

    from lusaug.generators.filters import quality_mask

    table_path = synthetic_dir / generator / "filter.csv"
    if not table_path.exists():
        raise TuneError(
            f"tune.filter_generator={generator!r}: {table_path} not found; "
            f"run `dvc repro filter@{generator}`"
        )
    table = pd.read_csv(table_path)
    keep = quality_mask(table["std"].to_numpy(), table["entropy"].to_numpy(), min_std, min_entropy)
    keep &= ~table["memorised"].astype(bool).to_numpy()
    kept = out_root / generator / "kept"
    kept.mkdir(parents=True, exist_ok=True)
    for name in table.loc[keep, "file"]:
        (kept / name).symlink_to((synthetic_dir / generator / "candidates" / name).resolve())
    return int(keep.sum())


def _metric_column(history: Any, metric: str) -> Any:
    if metric not in history.columns:
        raise TuneError(
            f"tune.metric {metric!r} is not a per-epoch validation metric of train_classifier; "
            f"available: {[c for c in history.columns if c.startswith('val_')]}"
        )
    return history[metric]


class Objective:
    """Train one classifier per trial (validation only) and return ``tune.metric``."""

    def __init__(
        self,
        params: Params,
        splits_csv: Path | str,
        synthetic_dir: Path | str = "data/synthetic",
        root: Path | str = ".",
    ) -> None:
        cfg = params.tune
        if cfg.architecture not in params.train.architectures:
            raise TuneError(
                f"tune.architecture {cfg.architecture!r} is not in train.architectures "
                f"{sorted(params.train.architectures)}"
            )
        self.params, self.cfg = params, cfg
        self.splits_csv, self.synthetic_dir, self.root = (
            Path(splits_csv),
            Path(synthetic_dir),
            Path(root),
        )

    def __call__(self, trial: Any) -> float:
        import optuna

        from lusaug.models.train import train_classifier

        cfg, classes = self.cfg, self.params.base.classes
        point = suggest(trial, cfg, classes)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        train = dataclasses.replace(
            self.params.train, lr=point["lr"], epochs=cfg.epochs or self.params.train.epochs
        )
        params = dataclasses.replace(self.params, train=train)

        def report(epoch: int, row: dict[str, float]) -> None:
            if cfg.metric not in row:
                raise TuneError(
                    f"tune.metric {cfg.metric!r} is not reported per epoch; "
                    f"available: {sorted(k for k in row if k.startswith('val_'))}"
                )
            trial.report(float(row[cfg.metric]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        with tempfile.TemporaryDirectory(prefix=f"tune-trial{trial.number}-") as tmp:
            strategy, synth_root = "class_weights_tuned", self.synthetic_dir
            if cfg.filter_generator:
                f = point["filter"]
                synth_root = Path(tmp) / "synthetic"
                n = filtered_synthetic(
                    self.synthetic_dir,
                    cfg.filter_generator,
                    f["min_std"],
                    f["min_entropy"],
                    synth_root,
                )
                trial.set_user_attr("synthetic_kept", n)
                if n == 0:
                    raise optuna.TrialPruned("no synthetic candidate passes these thresholds")
                strategy = f"synthetic-{cfg.filter_generator}"
            result = train_classifier(
                params,
                self.splits_csv,
                Path(tmp) / "run",
                strategy,
                cfg.architecture,
                self.params.base.seed,
                tuned_weights=point["class_weights"],
                synthetic_dir=synth_root,
                tracking=False,
                on_epoch_end=report,
                root=self.root,
                progress=False,
            )
            if cfg.filter_generator:
                _check_weights_applied(Path(tmp) / "run")
        values = _metric_column(result.history, cfg.metric)
        best_row = result.history.loc[result.history["epoch"] == result.best_epoch]
        value = float(best_row[cfg.metric].iloc[0]) if len(best_row) else float(values.max())
        target = self.params.base.target_class
        recall = result.val_metrics.get(f"recall_{target}")
        if recall is not None:
            trial.set_user_attr(f"val_recall_{target}", float(recall))
        if cfg.viral_recall_floor > 0:
            if recall is None:
                raise TuneError(
                    f"train_classifier reported no recall_{target}; "
                    "cannot apply tune.viral_recall_floor"
                )
            trial.set_constraint(RECALL_CONSTRAINT, cfg.viral_recall_floor - float(recall))
        return value


def _check_weights_applied(run_dir: Path) -> None:
    """Guard: the synthetic-<G> strategy must have used the trial's class weights."""
    import json

    summary = json.loads((run_dir / "val_metrics.json").read_text())
    if not summary.get("loss_weights"):
        raise TuneError(
            "train_classifier ignored the tuned class weights for a synthetic-<G> strategy, so "
            'thresholds and weights cannot be tuned together yet; set tune.filter_generator: ""'
        )


# ------------------------------------------------------------------------------------ MLflow


class MlflowTrialCallback:
    """One MLflow run per finished trial, nested under the study's parent run (same experiment).

    Written with the client API (not the fluent active-run stack), so it works from any worker
    process: it only needs the parent's run id, which the study stores as a user attribute.
    """

    def __init__(
        self, experiment_id: str, parent_run_id: str, metric: str, tags: dict[str, str]
    ) -> None:
        self.experiment_id, self.parent, self.metric, self.tags = (
            experiment_id,
            parent_run_id,
            metric,
            tags,
        )

    def __call__(self, study: Any, trial: Any) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient()
        tags = {
            **self.tags,
            "mlflow.parentRunId": self.parent,
            "optuna.study": study.study_name,
            "optuna.trial": str(trial.number),
            "optuna.state": trial.state.name,
        }
        run = client.create_run(self.experiment_id, run_name=f"trial-{trial.number}", tags=tags)
        now = int(time.time() * 1000)
        metrics = [
            Metric(self.metric, float(v), now, int(step))
            for step, v in trial.intermediate_values.items()
        ]
        if trial.value is not None:
            metrics.append(Metric(f"best_{self.metric}", float(trial.value), now, 0))
        metrics += [
            Metric(k, float(v), now, 0)
            for k, v in trial.user_attrs.items()
            if isinstance(v, (int, float))
        ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, f"{v:.6g}") for k, v in trial.params.items()],
        )
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(trial.state.name, "FAILED")
        client.set_terminated(run.info.run_id, status=status)


def tracking_setup(
    study: Any, params: Params, root: Path | str
) -> tuple[str, str, dict[str, str]]:
    """(experiment id, the study's parent run id, standard tags); safe when workers race."""
    from mlflow.exceptions import MlflowException

    from lusaug.mlflow_store import setup_experiment, standard_tags

    try:
        exp_id = setup_experiment("tuning", params.mlflow.tracking_uri, root)
    except MlflowException:  # another worker created the experiment at the same moment
        exp_id = setup_experiment("tuning", params.mlflow.tracking_uri, root)
    tags = standard_tags(root, dvc_stage="tune", architecture=params.tune.architecture)
    return exp_id, parent_run(study, exp_id, tags), tags


def parent_run(study: Any, experiment_id: str, tags: dict[str, str]) -> str:
    """The study's MLflow parent run id (created once, remembered in the study)."""
    from mlflow import MlflowClient

    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        return str(run_id)
    run = MlflowClient().create_run(
        experiment_id,
        run_name=f"tune-{study.study_name}",
        tags={**tags, "optuna.study": study.study_name},
    )
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


# ------------------------------------------------------------------------------------ results


def best_feasible(study: Any) -> Any:
    """Best COMPLETE trial whose constraints all hold (<= 0); else the best COMPLETE one."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        raise TuneError(
            f"study {study.study_name!r} has no completed trial (all pruned or failed)"
        )
    feasible = [
        t
        for t in done
        if all(v <= 0 for v in t.system_attrs.get("constraints", []) or [])
        and all(v <= 0 for k, v in t.system_attrs.items() if k.startswith("constraints:"))
    ]
    return max(feasible or done, key=lambda t: t.value), bool(feasible)


def tuned_dict(study: Any, params: Params) -> dict[str, Any]:
    """What params/tuned.yaml holds: class_weights, lr, filter thresholds, and provenance."""
    best, feasible = best_feasible(study)
    classes, cfg = params.base.classes, params.tune
    p = best.params
    out: dict[str, Any] = {
        "class_weights": {c: round(float(p[f"w_{c}"]), 6) for c in classes},
        "lr": float(f"{p['lr']:.6g}"),
        "filter": (
            {
                "min_std": round(float(p["min_std"]), 4),
                "min_entropy": round(float(p["min_entropy"]), 4),
                "tuned": True,
            }
            if "min_std" in p
            else {
                "min_std": params.filter.min_std,
                "min_entropy": params.filter.min_entropy,
                "tuned": False,
            }
        ),
        "study": {
            "name": study.study_name,
            "best_trial": best.number,
            cfg.metric: float(best.value),
            "feasible": feasible,
            "trials": len(study.trials),
            "complete": sum(t.state.name == "COMPLETE" for t in study.trials),
            "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        },
    }
    return out


def write_tuned(path: Path | str, data: dict[str, Any]) -> None:
    import yaml

    header = (
        "# Written by the `tune` stage (Optuna; see params.yaml `tune`). Read by the\n"
        "# class_weights_tuned strategy. Do not edit: re-run `dvc repro tune`.\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(data, sort_keys=False))


def save_plots(study: Any, out_dir: Path | str) -> list[Path]:
    """Optimisation history and parameter importances (matplotlib, Agg) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if sum(t.state.name == "COMPLETE" for t in study.trials) >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    for name, fn in plots:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" warnings of optuna.visualization
            ax = fn(study)
        fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


# ------------------------------------------------------------------------------------ driving


def optimise(
    params: Params,
    splits_csv: Path | str,
    *,
    target_total: int | None = None,
    synthetic_dir: Path | str = "data/synthetic",
    root: Path | str = ".",
) -> Any:
    """One worker: run trials until the study holds ``target_total`` trials (or the timeout).

    ``target_total`` defaults to the trials already finished + ``tune.n_trials``, so a re-run
    adds trials instead of restarting. Returns the study.
    """
    import optuna
    from optuna.study import MaxTrialsCallback

    cfg = params.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(params, splits_csv, synthetic_dir)
    study = open_study(cfg, make_storage(cfg.storage, root), name)
    if target_total is None:
        target_total = finished_count(study) + cfg.n_trials
    exp_id, parent, tags = tracking_setup(study, params, root)
    callbacks = [
        MaxTrialsCallback(
            target_total, states=None
        ),  # counts running trials: workers stop together
        MlflowTrialCallback(exp_id, parent, cfg.metric, tags),
    ]
    remaining = target_total - len(study.get_trials(deepcopy=False))
    if remaining > 0:
        study.optimize(
            Objective(params, splits_csv, synthetic_dir, root),
            n_trials=remaining,
            timeout=cfg.timeout_s or None,
            callbacks=callbacks,
            gc_after_trial=True,
        )
    return study


def _finished_states() -> tuple:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def run_workers(
    params_file: Path | str,
    splits_csv: Path | str,
    workers: int,
    target_total: int,
    root: Path | str = ".",
    synthetic_dir: Path | str = "data/synthetic",
) -> list[subprocess.Popen]:
    """Start ``workers`` extra processes on the same storage (they stop at ``target_total``)."""
    script = Path(__file__).resolve().parents[3] / "pipelines" / "tune.py"
    env = {**os.environ, "LUSAUG_PARAMS": str(Path(params_file).resolve())}
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(splits_csv),
                "--worker",
                "--target-total",
                str(target_total),
                "--synthetic-dir",
                str(synthetic_dir),
            ],
            cwd=root,
            env=env,
        )
        for _ in range(workers)
    ]


def finish(
    study: Any, params: Params, tuned_path: Path | str, plots_dir: Path | str
) -> dict[str, Any]:
    """Write params/tuned.yaml and the plots; attach both to the study's MLflow parent run."""
    from mlflow import MlflowClient

    data = tuned_dict(study, params)
    write_tuned(tuned_path, data)
    plots = save_plots(study, plots_dir)
    client = MlflowClient()
    parent = study.user_attrs[PARENT_ATTR]
    for p in plots:
        client.log_artifact(parent, str(p), "plots")
    client.log_artifact(parent, str(tuned_path))
    client.log_metric(parent, f"best_{params.tune.metric}", data["study"][params.tune.metric])
    client.log_metric(parent, "trials", data["study"]["trials"])
    if client.get_run(parent).info.status == "RUNNING":
        client.set_terminated(parent, "FINISHED")
    if not math.isfinite(data["study"][params.tune.metric]):
        raise TuneError("the best trial has a non-finite objective")
    return data


def tune(
    params: Params,
    params_file: Path | str,
    splits_csv: Path | str,
    tuned_path: Path | str,
    plots_dir: Path | str,
    *,
    root: Path | str = ".",
    synthetic_dir: Path | str = "data/synthetic",
) -> dict[str, Any]:
    """The ``tune`` stage: ``tune.workers`` processes add ``tune.n_trials`` trials to the study,
    then params/tuned.yaml and the plots are written from all of the study's trials."""
    cfg = params.tune
    name = study_name(params, splits_csv, synthetic_dir)
    study = open_study(cfg, make_storage(cfg.storage, root), name)
    target = finished_count(study) + cfg.n_trials
    logger.info(
        "study %s: %d finished trials, running to %d with %d worker(s)",
        name,
        finished_count(study),
        target,
        cfg.workers,
    )
    tracking_setup(study, params, root)  # experiment + parent run exist before any worker starts
    extra = run_workers(params_file, splits_csv, cfg.workers - 1, target, root, synthetic_dir)
    try:
        study = optimise(
            params, splits_csv, target_total=target, synthetic_dir=synthetic_dir, root=root
        )
    finally:
        codes = [w.wait() for w in extra]
    if any(codes):
        raise TuneError(f"tuning worker(s) failed with exit codes {codes}")
    return finish(study, params, tuned_path, plots_dir)


def finished_count(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=_finished_states()))
