"""What one classifier run is and what it trains on, fixed before its first epoch.

A run (strategy x architecture x seed, on one fold) has three phases, as timm's ``main`` hands
off to ``train_one_epoch`` / ``validate``: :func:`prepare_run` here (frames, strategy plan, model
meta, fingerprint: cheap, so a finished run can be recognised and skipped),
:func:`lusaug.models.train_loop.train_classifier` (the epochs) and
:func:`lusaug.models.run_files.finish_run` (best weights on validation, the run's files).
:func:`planned_runs` lists every run of the ``train`` matrix.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lusaug.core.config import SYNTHETIC_PREFIX, BaseParams, Strategy, TrainParams, parse_strategy
from lusaug.core.utils import file_hash
from lusaug.models.classifier import ClassifierMeta
from lusaug.models.frame_sets import (
    FrameSet,
    concat,
    load_split,
    load_synthetic,
    synthetic_subset,
    take,
    without_label,
)
from lusaug.models.strategies import (
    FoldInputs,
    StrategyError,
    TrainingPlan,
    Tuned,
    check_generator,
    matched_repeats,
    plan_for,
    read_tuned,
    synthetic_class_files,
    synthetic_files,
)

logger = logging.getLogger(__name__)

# Keys of the train section that list the matrix (or say how to log it): they do not change
# what one run does, so they stay out of its fingerprint.
_NOT_IN_FINGERPRINT = (
    "strategies",
    "seeds",
    "architectures",
    "overrides",
    "log_model",
    "log_model_format",
)


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


def planned_runs(cfg: TrainParams, fold: int | None = None) -> list[RunSpec]:
    """Every run of the matrix, in report order: strategy, then architecture, then seed
    (``train.overrides`` gives a strategy its own architectures and seeds)."""
    return [RunSpec(s, a, seed, fold) for s in cfg.strategies for a, seed in cfg.runs_of(s)]


def parse_run_name(name: str) -> tuple[str, str, int]:
    """Inverse of :attr:`RunSpec.name` (strategy names may contain '-', arch names may not)."""
    strategy, arch, seed = name.rsplit("-", 2)
    return strategy, arch, int(seed)


def file_digest(path: Path | str) -> str:
    """sha1 of a file: what a run's fingerprint records of its split file."""
    return file_hash(path, "sha1")


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
    if strategy.kind == "matched":
        return _matched_frames(strategy, data, base, cfg, inputs), []
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


def matched_count(
    strategy: Strategy, data: FoldData, base: BaseParams, cfg: TrainParams, inputs: FoldInputs
) -> int:
    """Rare-class images per epoch of ``synthetic-<G>`` in this fold and run: the real rare-class
    training frames plus G's kept images it uses (after ``train.synthetic_per_class``)."""
    target = base.classes.index(base.target_class)
    twin = parse_strategy(SYNTHETIC_PREFIX + strategy.generator)
    used = synthetic_subset(
        synthetic_files(inputs, twin), cfg.synthetic_per_class, base.seed, strategy.generator
    )
    return int((data.train.labels == target).sum()) + len(used)


def _matched_frames(
    strategy: Strategy, data: FoldData, base: BaseParams, cfg: TrainParams, inputs: FoldInputs
) -> FrameSet:
    """The fold's real frames with the rare class's repeated to ``synthetic-<G>``'s count."""
    target = base.classes.index(base.target_class)
    labels = data.train.labels.numpy()
    rare = np.flatnonzero(labels == target)
    reps = matched_repeats(rare.size, matched_count(strategy, data, base, cfg, inputs), base.seed)
    index = np.sort(np.concatenate([np.flatnonzero(labels != target), np.repeat(rare, reps)]))
    return take(data.train, index)


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
    if strategy.kind == "matched":  # follows its generator's kept images, which may change
        extra["rare_per_epoch"] = int(counts[base.classes.index(base.target_class)])
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
