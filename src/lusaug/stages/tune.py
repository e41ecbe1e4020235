"""Stage ``tune@k``: one Optuna study per tuned strategy, on that fold's train/val only.

Tuning is nested inside the cross-validation: fold k's study sees fold k's training and
validation patients, never its test patients, so the tuned values cannot leak the test fold into
its own evaluation. The tuned strategies are the ones ``train.strategies`` lists
(``class_weights_tuned``, ``synthetic_tuned-<G>``); each gets its own study, so weights tuned with
a synthetic set are only ever used with that synthetic set at the thresholds tuned with them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import BaseParams, Strategy, TrainParams, TuneParams, parse_strategy
from lusaug.core.mlflow_store import standard_tags
from lusaug.models.run_setup import FoldData
from lusaug.models.strategies import GENERATOR_METRICS, FoldInputs
from lusaug.tuning.objective import (
    FILTER_TABLE,
    Objective,
    TuneError,
    filter_table,
    fold_thresholds,
    kept_at,
)
from lusaug.tuning.optuna_study import (
    MlflowTrialCallback,
    fingerprint,
    make_storage,
    open_study,
    optimise,
    run_workers,
    study_name,
    tracking_setup,
)
from lusaug.tuning.tuned_file import save_plots, section, write_tuned

logger = logging.getLogger(__name__)

# Settings that decide where a study lives or how many trials it holds, but not what its n-th
# trial scores: changing them continues the same study.
_NOT_IN_OBJECTIVE = {"study_name", "storage", "n_trials", "workers"}
_TRAIN_MATRIX = {"strategies", "seeds", "architectures", "log_model", "log_model_format"}


@dataclass(frozen=True)
class TunePaths:
    splits: Path  # data/splits/fold-<k>.csv
    tuned: Path | None = None  # params/tuned/fold-<k>.yaml (None for an extra --worker)
    plots: Path | None = None  # plots/tune/fold-<k> (a folder per tuned strategy)
    synthetic: Path | None = None  # data/synthetic/fold-<k> (the filter tables)
    generator_metrics: Path | None = None  # metrics/fold-<k> (the filter's thresholds)

    def inputs(self) -> FoldInputs:
        """The fold's synthetic sets and filter verdicts (synthetic_tuned-<G> reads them)."""
        return FoldInputs(self.synthetic, None, self.generator_metrics)


def tuned_strategies(train: TrainParams) -> list[Strategy]:
    return [s for s in map(parse_strategy, train.strategies) if s.tuned]


def objective_settings(
    strategy: Strategy, fold: int | str, train: TrainParams, base: BaseParams, cfg: TuneParams
) -> dict[str, Any]:
    """Every setting a trial's score depends on (the study's fingerprint hashes them)."""
    tr = {k: v for k, v in dataclasses.asdict(train).items() if k not in _TRAIN_MATRIX}
    return {
        "fold": fold,
        "strategy": strategy.name,
        "base": {
            k: v for k, v in dataclasses.asdict(base).items() if k not in ("workers", "profile")
        },
        "train": tr,
        "architecture": dataclasses.asdict(train.architectures[cfg.architecture]),
        "tune": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_OBJECTIVE},
    }


def _study_inputs(splits_csv: Path, inputs: FoldInputs, strategy: Strategy) -> list[Path]:
    files = [splits_csv]
    if strategy.kind == "synthetic_tuned":
        g = strategy.generator
        files.append(Path(inputs.synthetic_dir or ".") / g / FILTER_TABLE)
        files.append(Path(inputs.generator_metrics or ".") / GENERATOR_METRICS.format(generator=g))
    return files


def study_for(
    strategy: Strategy,
    paths: TunePaths,
    fold: int | str,
    base: BaseParams,
    train: TrainParams,
    cfg: TuneParams,
    root: Path | str = ".",
) -> Any:
    """Open (create or resume) the study of ``strategy`` in ``fold``."""
    settings = objective_settings(strategy, fold, train, base, cfg)
    digest = fingerprint(settings, _study_inputs(Path(paths.splits), paths.inputs(), strategy))
    name = study_name(cfg.study_name, fold, strategy.name, digest)
    return open_study(cfg, make_storage(cfg.storage, root), name)


def run(
    paths: TunePaths,
    base: BaseParams,
    train: TrainParams,
    cfg: TuneParams,
    *,
    fold: int | str,
    tracking_uri: str | None = None,
    worker_argv: list[str] | None = None,
    params_file: Path | str = "params.yaml",
    root: Path | str = ".",
) -> dict[str, Any]:
    """Run every tuned strategy's study to ``tune.n_trials`` finished trials; write the file.

    Args:
        paths: The fold's split file, the tuned file and plots folder it writes (the tuned file
            is written even when nothing is tuned), its synthetic sets.
        base, train, cfg: The base, train and tune sections.
        fold: The fold index ("final" for the final model's split).
        tracking_uri: Log trials to MLflow (None = off).
        worker_argv: The stage's argv, for ``tune.workers - 1`` extra worker processes.
        params_file: The params file the workers read.
        root: Repository root (relative storage paths).
    """
    if paths.tuned is None or paths.plots is None:
        raise TuneError("the tune stage needs the tuned file and the plots folder to write")
    splits_csv, inputs = Path(paths.splits), paths.inputs()
    if cfg.architecture not in train.architectures:
        raise TuneError(f"tune.architecture {cfg.architecture!r} is not in train.architectures")
    strategies = tuned_strategies(train)
    data = FoldData.load(splits_csv, base) if strategies else None
    Path(paths.plots).mkdir(parents=True, exist_ok=True)  # a DVC output, even with nothing to tune
    sections: dict[str, Any] = {}
    for strategy in strategies:
        if strategy.kind == "synthetic_tuned":
            thresholds = fold_thresholds(inputs, strategy.generator)
            if thresholds.blocked:  # never trained on, so nothing to tune (train skips it too)
                sections[strategy.name] = {"blocked": f"generator {strategy.generator} is blocked"}
                continue
            loosest = {
                "filter": {
                    "min_std": cfg.min_std_range[0],
                    "min_entropy": cfg.min_entropy_range[0],
                }
            }
            if not kept_at(filter_table(inputs, strategy.generator), thresholds, loosest):
                # every trial would be pruned: the fixed criteria (sharpness band, memorisation)
                # already reject every candidate, so there is nothing to tune and nothing to train
                sections[strategy.name] = {
                    "skipped": f"no candidate of {strategy.generator} passes the fold's filter "
                    "even at the loosest tuned std/entropy thresholds"
                }
                logger.warning("fold %s: %s", fold, sections[strategy.name]["skipped"])
                continue
        study = study_for(strategy, paths, fold, base, train, cfg, root)
        logger.info(
            "fold %s: study %s, %d finished trials", fold, study.study_name, len(study.trials)
        )
        callbacks = []
        parent = None
        if tracking_uri is not None:
            tags = standard_tags(root, dvc_stage="tune", fold=fold, strategy=strategy.name)
            exp_id, parent = tracking_setup(study, tracking_uri, tags, root)
            callbacks.append(MlflowTrialCallback(exp_id, parent, cfg.metric, tags))
        extra = []
        if cfg.workers > 1 and worker_argv is not None:
            argv = [*worker_argv, "--strategy", strategy.name]
            extra = run_workers(params_file, argv, cfg.workers - 1, root)
        try:
            optimise(
                study, Objective(strategy, data, train, base, cfg, inputs), cfg.n_trials, callbacks
            )
        finally:
            codes = [w.wait() for w in extra]
        if any(codes):
            raise TuneError(f"tuning worker(s) failed with exit codes {codes}")
        sections[strategy.name] = section(study, base.classes, cfg.architecture, cfg.metric)
        plots = save_plots(study, Path(paths.plots) / strategy.name)
        if parent is not None:
            _finish_parent(parent, plots, sections[strategy.name], cfg.metric)
    write_tuned(paths.tuned, sections)
    return sections


def work(
    paths: TunePaths,
    strategy_name: str,
    base: BaseParams,
    train: TrainParams,
    cfg: TuneParams,
    *,
    fold: int,
    tracking_uri: str | None = None,
    root: Path | str = ".",
) -> None:
    """An extra worker: run trials of one strategy's study until it is complete (its trials
    nest under the same MLflow parent run as the main process's)."""
    strategy = parse_strategy(strategy_name)
    study = study_for(strategy, paths, fold, base, train, cfg, root)
    data = FoldData.load(paths.splits, base)
    callbacks = []
    if tracking_uri is not None:
        tags = standard_tags(root, dvc_stage="tune", fold=fold, strategy=strategy.name)
        exp_id, parent = tracking_setup(study, tracking_uri, tags, root)
        callbacks.append(MlflowTrialCallback(exp_id, parent, cfg.metric, tags))
    objective = Objective(strategy, data, train, base, cfg, paths.inputs())
    optimise(study, objective, cfg.n_trials, callbacks)


def _finish_parent(parent: str, plots: list[Path], entry: dict[str, Any], metric: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for p in plots:
        client.log_artifact(parent, str(p), "plots")
    client.log_dict(parent, entry, "tuned.json")
    client.log_metric(parent, f"best_{metric}", entry["study"][metric])
    client.log_metric(parent, "finished_trials", entry["study"]["finished_trials"])
    if client.get_run(parent).info.status == "RUNNING":
        client.set_terminated(parent, "FINISHED")
