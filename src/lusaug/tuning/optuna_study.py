"""The Optuna side of tuning: storage, studies that resume to the same result, MLflow per trial.

Storage: ``tune.storage`` is any Optuna RDB URL (``sqlite:///optuna.db`` by default, PostgreSQL
for many machines) or ``journal:<file>`` (JournalStorage). It only lets an interrupted study
resume; nothing that changes a result lives only there: a study's name carries a fingerprint of
everything its trials' scores depend on (:func:`study_name`), it runs until it holds
``tune.n_trials`` finished trials (a re-run on the same inputs adds none), and
:class:`TrialSeededTPE` derives each trial's sampler seed from the number of trials finished
before it, so a resumed study suggests exactly what an uninterrupted one would. With one worker
the tuned file is therefore a pure function of the stage's inputs.

MLflow: one parent run per study (its id is a study user attribute, so every worker and every
re-run nests under it) and one run per finished trial nested under it in the same experiment,
written by :class:`MlflowTrialCallback` (optuna-integration's MLflowCallback is deprecated and
puts trials in another experiment by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from lusaug.core.config import TuneParams
from lusaug.core.mlflow_store import setup_experiment

PARENT_ATTR = "mlflow_parent_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Study names are prefix-fold-strategy-<this many hex digits of the inputs' fingerprint>.
NAME_DIGITS = 10


def make_storage(url: str, root: Path | str = ".") -> Any:
    """``journal:<file>`` -> JournalStorage; anything else is an RDB URL (relative sqlite paths
    are made absolute against ``root`` so workers started elsewhere share the same file)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path = path if path.is_absolute() else Path(root).resolve() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{Path(root).resolve() / url.removeprefix('sqlite:///')}"
    # heartbeats turn a killed process's RUNNING trial into FAIL, so a resume re-runs it
    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=120)


def fingerprint(settings: dict[str, Any], files: Sequence[Path]) -> str:
    """sha256 of the settings a trial's score depends on and of the input files' bytes."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        digest.update(f.read_bytes() if f.exists() else f"missing:{f.name}".encode())
    return digest.hexdigest()


def study_name(prefix: str, fold: int | str, strategy: str, fingerprint_hex: str) -> str:
    """``<tune.study_name>-fold<k>-<strategy>-<fingerprint>``: same inputs, same study."""
    return f"{prefix}-fold{fold}-{strategy}-{fingerprint_hex[:NAME_DIGITS]}"


class TrialSeededTPE(BaseSampler):
    """TPE whose seed for a trial is ``seed + (trials finished before it)``.

    A plain seeded TPESampler draws from one random stream, so a study resumed in a new process
    continues with a fresh stream and suggests other points than an uninterrupted run. Here every
    trial gets a sampler seeded by its position among the finished trials (a trial killed midway
    ends FAIL and is not counted), so the n-th finished trial is the same however often the study
    was interrupted.
    """

    def __init__(self, seed: int, n_startup_trials: int) -> None:
        self.seed, self.n_startup_trials = seed, n_startup_trials
        self._tpe = self._make(0)

    def _make(self, index: int) -> TPESampler:
        return TPESampler(seed=self.seed + index, n_startup_trials=self.n_startup_trials)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe = self._make(len(study.get_trials(deepcopy=False, states=FINISHED)))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, space: dict) -> dict:
        return self._tpe.sample_relative(study, trial, space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any
    ) -> Any:
        return self._tpe.sample_independent(study, trial, name, distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)


def open_study(cfg: TuneParams, storage: Any, name: str) -> optuna.Study:
    """Create or load (resume) study ``name``: per-trial seeded TPE, median pruning."""
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_epochs
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=TrialSeededTPE(cfg.sampler_seed, cfg.n_startup_trials),
        pruner=pruner,
        load_if_exists=True,
    )


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class MlflowTrialCallback:
    """One MLflow run per finished trial, nested under the study's parent run (same experiment).

    Written with the client API (not the fluent active-run stack), so it works from any worker
    process: it only needs the parent's run id, which the study stores as a user attribute.
    """

    def __init__(self, experiment_id: str, parent: str, metric: str, tags: dict[str, str]):
        self.experiment_id, self.parent, self.metric, self.tags = (
            experiment_id,
            parent,
            metric,
            tags,
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
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
            if isinstance(v, int | float)
        ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, f"{v:.6g}") for k, v in trial.params.items()],
        )
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(trial.state.name, "FAILED")
        client.set_terminated(run.info.run_id, status=status)


def tracking_setup(
    study: optuna.Study, tracking_uri: str, tags: dict[str, str], root: Path | str = "."
) -> tuple[str, str]:
    """(experiment id, the study's parent run id); safe when workers race."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        exp_id = setup_experiment("tuning", tracking_uri, root)
    except MlflowException:  # another worker created the experiment at the same moment
        exp_id = setup_experiment("tuning", tracking_uri, root)
    run_id = study.user_attrs.get(PARENT_ATTR)
    if not run_id:
        run = MlflowClient().create_run(
            exp_id,
            run_name=f"tune-{study.study_name}",
            tags={**tags, "optuna.study": study.study_name},
        )
        run_id = run.info.run_id
        study.set_user_attr(PARENT_ATTR, run_id)
    return exp_id, str(run_id)


def optimise(
    study: optuna.Study, objective: Any, n_trials: int, callbacks: Sequence[Any] = ()
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` finished ones (workers stop together)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    remaining = n_trials - finished_count(study)
    if remaining > 0:
        stop = MaxTrialsCallback(n_trials, states=FINISHED)
        study.optimize(
            objective, n_trials=remaining, callbacks=[stop, *callbacks], gc_after_trial=True
        )
    return study


def run_workers(
    params_file: Path | str, argv: Sequence[str], workers: int, root: Path | str = "."
) -> list[subprocess.Popen]:
    """Start ``workers`` extra ``pipelines/tune.py --worker`` processes on the same storage."""
    script = Path(__file__).resolve().parents[3] / "pipelines" / "tune.py"
    env = {**os.environ, "LUSAUG_PARAMS": str(Path(params_file).resolve())}
    return [
        subprocess.Popen([sys.executable, str(script), *argv, "--worker"], cwd=root, env=env)
        for _ in range(workers)
    ]
