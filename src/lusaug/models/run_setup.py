"""Train one classifier run (strategy x architecture x seed, on one fold) with accelerate.

One loop for every case: CPU here, GPUs with ``accelerate launch --multi_gpu`` elsewhere, optional
bf16 autocast. AdamW with linear warm-up then cosine decay; early stopping on validation macro-F1;
after every epoch the best weights (``model.pt``) and the full training state (``last.pt``:
optimizer, scheduler, epoch, early-stopping counters, history, RNG state) are written atomically.
``resume=True`` continues an interrupted run from ``last.pt`` when it belongs to the same run
(same fingerprint of params, data and strategy inputs); otherwise training starts afresh.

A run has three phases, as timm's ``main`` hands off to ``train_one_epoch`` / ``validate``:
:func:`prepare_run` (frames, strategy, fingerprint: cheap, so a finished run can be recognised
and skipped), :func:`train_classifier` (the epochs: set-up, resume, one epoch and its checkpoint
are the pieces of :mod:`lusaug.models.train_loop`, an epoch's work is :mod:`lusaug.models.epochs`)
and :func:`lusaug.models.run_files.finish_run` (best weights on validation, the run's files).

Outputs in ``out_dir`` (a finished run has no ``last.pt``): ``model.pt`` (best weights,
:func:`lusaug.models.classifier.load_classifier` reads it), ``history.csv``,
``val_predictions.csv``, ``val_metrics.json``, ``classification_report.txt``,
``val_confusion.png`` and ``run.json`` (what was run, the fingerprint, MLflow ids).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lusaug.core.config import BaseParams, Strategy, TrainParams, parse_strategy
from lusaug.models.classifier import ClassifierMeta
from lusaug.models.epochs import make_accelerator, train_one_epoch, validate
from lusaug.models.frame_sets import FrameSet, concat, load_split, load_synthetic, without_label
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import FILES, TrainResult, finish_run
from lusaug.models.strategies import (
    FoldInputs,
    StrategyError,
    TrainingPlan,
    Tuned,
    check_generator,
    plan_for,
    read_tuned,
    synthetic_class_files,
    synthetic_files,
)
from lusaug.models.train_loop import (
    Progress,
    build_loop,
    checkpoint_epoch,
    restore,
    resume_state,
    run_epoch,
    start_tracking,
)

__all__ = [  # the loop's building blocks and run files are re-exported for callers of this module
    "FILES",
    "FoldData",
    "RunSetup",
    "RunSpec",
    "TrainResult",
    "file_digest",
    "is_finished",
    "make_accelerator",
    "parse_run_name",
    "prepare_run",
    "train_classifier",
    "train_one_epoch",
    "validate",
]

logger = logging.getLogger(__name__)

# Keys of the train section that list the matrix (or say how to log it): they do not change
# what one run does, so they stay out of its fingerprint.
_NOT_IN_FINGERPRINT = ("strategies", "seeds", "architectures", "log_model", "log_model_format")


@dataclass(frozen=True)
class RunSpec:
    """One run of the matrix."""

    strategy: str
    arch: str
    seed: int
    fold: int | None = None  # None outside cross-validation (the final model, tests)

    @property
    def name(self) -> str:
        """Folder / MLflow name of a run: ``<strategy>-<arch>-<seed>``."""
        return f"{parse_strategy(self.strategy).name}-{self.arch}-{self.seed}"


def parse_run_name(name: str) -> tuple[str, str, int]:
    """Inverse of :attr:`RunSpec.name` (strategy names may contain '-', arch names may not)."""
    strategy, arch, seed = name.rsplit("-", 2)
    return strategy, arch, int(seed)


def file_digest(path: Path | str) -> str:
    h = hashlib.sha1()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FoldData:
    """A fold's real training and validation frames, read once per process."""

    train: FrameSet
    val: FrameSet
    digest: str  # sha1 of the split file: a run's fingerprint includes it

    @classmethod
    def load(cls, splits_csv: Path | str, base: BaseParams) -> FoldData:
        classes, size = base.classes, base.image_size
        return cls(
            train=load_split(splits_csv, "train", classes, size),
            val=load_split(splits_csv, "val", classes, size),
            digest=file_digest(splits_csv),
        )


@dataclass
class RunSetup:
    """Everything a run trains on and how, fixed before the first epoch."""

    spec: RunSpec
    strategy: Strategy
    train: FrameSet
    val: FrameSet
    counts: np.ndarray  # training frames per class (synthetic included)
    plan: TrainingPlan
    meta: ClassifierMeta
    fingerprint: str
    n_synthetic: int
    tuned_on: str = ""  # architecture the tuned values were found with ("" = not tuned)


def _fingerprint(
    cfg: TrainParams, base: BaseParams, spec: RunSpec, meta: ClassifierMeta, extra: dict
) -> str:
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_FINGERPRINT}
    blob = {
        "classes": base.classes,
        "image_size": base.image_size,
        "train": train,
        "model": [meta.model, meta.kwargs],
        "strategy": spec.strategy,
        "seed": spec.seed,
        **extra,
    }
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _training_frames(
    strategy: Strategy,
    data: FoldData,
    base: BaseParams,
    cfg: TrainParams,
    inputs: FoldInputs,
    tuned: Tuned | None,
) -> tuple[FrameSet, list[str]]:
    """The real training frames as the strategy changes them, and the synthetic files used."""
    if not strategy.generator:
        return data.train, []
    if strategy.kind == "only":
        return _synthetic_only_frames(strategy, base, cfg, inputs)
    target = base.classes.index(base.target_class)
    files = synthetic_files(inputs, strategy, tuned)
    synth = load_synthetic(
        files,
        target,
        base.target_class,
        base.image_size,
        cfg.synthetic_per_class,
        base.seed,
        strategy.generator,
    )
    real = without_label(data.train, target) if strategy.kind == "replace" else data.train
    return concat(real, synth), sorted(Path(p).name for p in synth.frames["path"])


def _synthetic_only_frames(
    strategy: Strategy, base: BaseParams, cfg: TrainParams, inputs: FoldInputs
) -> tuple[FrameSet, list[str]]:
    """Every class from a class-conditional G's kept images, no real frame."""
    per_class = synthetic_class_files(inputs, strategy, base.classes, base.target_class)
    sets = [
        load_synthetic(
            per_class[label],
            base.classes.index(label),
            label,
            base.image_size,
            cfg.synthetic_per_class,
            base.seed,
            strategy.generator,
        )
        for label in base.classes
    ]
    frames = functools.reduce(concat, sets)
    used = sorted(str(Path(p).relative_to(inputs.synthetic_dir)) for p in frames.frames["path"])
    return frames, used


def prepare_run(
    spec: RunSpec,
    data: FoldData,
    cfg: TrainParams,
    base: BaseParams,
    inputs: FoldInputs | None = None,
    tuned: Tuned | None = None,
) -> RunSetup:
    """Frames, strategy plan, model meta and fingerprint of one run (no training yet).

    Args:
        spec: The run.
        data: The fold's frames (:meth:`FoldData.load`).
        cfg: The train section.
        base: The base section (classes, image size, target class, seed).
        inputs: The fold's tuned file, synthetic folder and generator verdicts.
        tuned: Tuned values to use instead of the fold's tuned file (a tuning trial's point).

    Raises:
        StrategyError: An input the strategy needs is missing.
        SkipRun: The strategy's generator is blocked in this fold.
    """
    strategy = parse_strategy(spec.strategy)
    inputs = inputs or FoldInputs()
    if spec.arch not in cfg.architectures:
        raise StrategyError(
            f"unknown architecture {spec.arch!r}; train.architectures has {sorted(cfg.architectures)}"
        )
    if strategy.generator:  # a blocked generator is never used, tuned or not
        check_generator(inputs, strategy.generator)
    if strategy.tuned and tuned is None:
        tuned = read_tuned(inputs.tuned, strategy.name, base.classes)
    train, synthetic = _training_frames(strategy, data, base, cfg, inputs, tuned)
    counts = train.class_counts(len(base.classes))
    plan = plan_for(strategy, counts, base.classes, tuned if strategy.tuned else None)
    meta = ClassifierMeta.for_architecture(
        cfg.architectures[spec.arch],
        base.classes,
        base.image_size,
        architecture=spec.arch,
        strategy=strategy.name,
        seed=spec.seed,
        run=spec.name,
        fold=spec.fold,
    )
    extra = {
        "splits": data.digest,
        "synthetic": synthetic,
        "plan": [plan.loss_weights, plan.oversample, plan.lr],
    }
    return RunSetup(
        spec=spec,
        strategy=strategy,
        train=train,
        val=data.val,
        counts=counts,
        plan=plan,
        meta=meta,
        fingerprint=_fingerprint(cfg, base, spec, meta, extra),
        n_synthetic=len(synthetic),
        tuned_on=tuned.architecture if tuned is not None else "",
    )


def is_finished(out_dir: Path | str, fingerprint: str) -> bool:
    """A finished run of exactly this setup (its outputs can be kept as they are)."""
    out_dir = Path(out_dir)
    run_file = out_dir / FILES["run"]
    if (out_dir / FILES["last"]).exists() or not run_file.exists():
        return False
    if not (out_dir / FILES["checkpoint"]).exists():
        return False
    return json.loads(run_file.read_text()).get("fingerprint") == fingerprint


def _clean(out_dir: Path) -> None:
    """Remove this module's files from a previous run (only known names: never a whole dir)."""
    for name in FILES.values():
        (out_dir / name).unlink(missing_ok=True)


def train_classifier(
    setup: RunSetup,
    out_dir: Path | str,
    cfg: TrainParams,
    classes: list[str],
    *,
    resume: bool = False,
    tracking: RunTracking | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one prepared run and write its outputs; returns what it achieved on validation.

    Args:
        setup: From :func:`prepare_run`.
        out_dir: The run's folder (``models/classifiers/fold-<k>/<strategy>-<arch>-<seed>``).
        cfg: The train section.
        classes: Class names in label order.
        resume: Continue from ``out_dir/last.pt`` when it belongs to this run.
        tracking: Log to MLflow (experiment ``lusaug-classifiers``); None = no tracking.
        on_epoch_end: Called with (epoch, epoch metrics) after each epoch's checkpoint; it may
            raise to stop training (e.g. ``optuna.TrialPruned``); the checkpoint is kept.
        progress: Show a progress bar.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    state = resume_state(out_dir / FILES["last"], setup.fingerprint, resume)
    if state is None:
        _clean(out_dir)
    loop = build_loop(setup, cfg, classes)
    done = Progress() if state is None else restore(loop, state, setup.spec.name)
    resume_run_id = None if state is None else state.get("mlflow_run_id")
    tracker = start_tracking(loop, setup, cfg, classes, tracking, resume_run_id)
    main = loop.accelerator.is_main_process
    ok = False
    try:
        for epoch in range(done.epoch + 1, cfg.epochs + 1):
            if done.should_stop(cfg.patience):
                break
            row = run_epoch(loop, setup, cfg, classes, epoch, progress and main)
            improved = done.record(row)
            if main:
                checkpoint_epoch(loop, setup, out_dir, done, improved, tracker)
            loop.accelerator.wait_for_everyone()
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        result = finish_run(
            loop.accelerator,
            loop.model,
            setup,
            out_dir,
            cfg,
            classes,
            done.history,
            done.best_epoch,
            tracker,
            t0,
        )
        ok = True
        return result
    finally:
        if not ok:
            tracker.finish("KILLED")
