"""Train one classifier run (strategy x architecture x seed, on one fold) with accelerate.

One loop for every case: CPU here, GPUs with ``accelerate launch --multi_gpu`` elsewhere, optional
bf16 autocast. AdamW with linear warm-up then cosine decay; early stopping on validation macro-F1;
after every epoch the best weights (``model.pt``) and the full training state (``last.pt``:
optimizer, scheduler, epoch, early-stopping counters, history, RNG state) are written atomically.
``resume=True`` continues an interrupted run from ``last.pt`` when it belongs to the same run
(same fingerprint of params, data and strategy inputs); otherwise training starts afresh.

A run has three phases, as timm's ``main`` hands off to ``train_one_epoch`` / ``validate``:
:func:`prepare_run` (frames, strategy, fingerprint: cheap, so a finished run can be recognised
and skipped), :func:`train_classifier` (the epochs, :mod:`lusaug.models.epochs`) and
:func:`lusaug.models.run_files.finish_run` (best weights on validation, the run's files).

Outputs in ``out_dir`` (a finished run has no ``last.pt``): ``model.pt`` (best weights,
:func:`lusaug.models.classifier.load_classifier` reads it), ``history.csv``,
``val_predictions.csv``, ``val_metrics.json``, ``classification_report.txt``,
``val_confusion.png`` and ``run.json`` (what was run, the fingerprint, MLflow ids).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusaug.config import BaseParams, Strategy, TrainParams, parse_strategy
from lusaug.models.classifier import (
    ClassifierMeta,
    build_classifier,
    load_checkpoint,
    save_checkpoint,
)
from lusaug.models.data import (
    FrameSet,
    IndexedFrames,
    concat,
    load_split,
    load_synthetic,
    without_label,
)
from lusaug.models.epochs import (
    EpochSampler,
    lr_lambda,
    make_accelerator,
    seed_epoch,
    train_one_epoch,
    validate,
)
from lusaug.models.mlflow_runs import RunTracking, TrainTracker
from lusaug.models.run_files import FILES, TrainResult, finish_run
from lusaug.models.strategies import (
    FoldInputs,
    StrategyError,
    TrainingPlan,
    Tuned,
    check_generator,
    plan_for,
    read_tuned,
    sample_weights,
    synthetic_files,
)

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


def _resume_state(last: Path, fingerprint: str, resume: bool) -> dict[str, Any] | None:
    if not (resume and last.exists()):
        return None
    state = load_checkpoint(last)
    if state.get("fingerprint") == fingerprint:
        return state
    logger.warning("%s belongs to a different run (params or data changed): fresh start", last)
    return None


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
    spec, plan, meta = setup.spec, setup.plan, setup.meta
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    last = out_dir / FILES["last"]
    state = _resume_state(last, setup.fingerprint, resume)
    if state is None:
        _clean(out_dir)

    accelerator = make_accelerator(cfg.precision)
    torch.manual_seed(spec.seed)
    model = build_classifier(meta)
    lr = plan.lr if plan.lr is not None else cfg.lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    train = setup.train
    sampler = EpochSampler(
        len(train),
        spec.seed,
        sample_weights(train.labels.numpy(), len(classes)) if plan.oversample else None,
    )
    loader = torch.utils.data.DataLoader(
        IndexedFrames(train),
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        # a last batch of one frame breaks BatchNorm where the feature map is 1x1 (32 px ResNet)
        drop_last=len(train) % cfg.batch_size == 1,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # batches stay on the CPU for augmentation (its generator lives there), then move
    loader = accelerator.prepare_data_loader(loader, device_placement=False)
    steps = max(len(loader), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_lambda(cfg.epochs * steps, round(cfg.warmup_epochs * steps), cfg.min_lr_ratio),
    )
    weight = None if plan.loss_weights is None else torch.tensor(plan.loss_weights)
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=weight.float().to(accelerator.device) if weight is not None else None
    )

    start, best_f1, best_epoch, bad_epochs = 0, -1.0, 0, 0
    history: list[dict[str, float]] = []
    resume_run_id = None
    if state is not None:
        accelerator.unwrap_model(model).load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best_f1 = int(state["epoch"]), float(state["best_f1"])
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        history = [dict(h) for h in state["history"]]
        resume_run_id = state.get("mlflow_run_id")
        torch.set_rng_state(state["rng_state"])
        logger.info(
            "resuming %s after epoch %d (best val macro-F1 %.3f)", spec.name, start, best_f1
        )

    tags = {
        "strategy": setup.strategy.name,
        "architecture": spec.arch,
        "seed": spec.seed,
        "model": meta.model,
        "run": spec.name,
        "fold": "" if spec.fold is None else spec.fold,
        "tuned_on": setup.tuned_on,
    }
    main = accelerator.is_main_process
    tracker = TrainTracker(tracking if main else None, spec.name, tags, resume_run_id)
    tracker.log_params(
        {
            "run.loss_weights": plan.loss_weights,
            "run.oversample": plan.oversample,
            "run.lr": lr,
            "run.synthetic_frames": setup.n_synthetic,
            **{
                f"run.train_frames.{c}": int(n) for c, n in zip(classes, setup.counts, strict=True)
            },
        }
    )
    if main:
        logger.info(
            "***** training %s%s *****  frames %s (synthetic %d), %d epochs x %d steps, "
            "loss weights %s, oversample %s, lr %g, %s",
            spec.name,
            "" if spec.fold is None else f" (fold {spec.fold})",
            dict(zip(classes, setup.counts.tolist(), strict=True)),
            setup.n_synthetic,
            cfg.epochs,
            steps,
            None if plan.loss_weights is None else [round(w, 2) for w in plan.loss_weights],
            plan.oversample,
            lr,
            cfg.precision,
        )
    aug_gen = torch.Generator()
    ok = False
    try:
        for epoch in range(start + 1, cfg.epochs + 1):
            if cfg.patience > 0 and bad_epochs >= cfg.patience:
                break
            te = time.perf_counter()
            seed_epoch(spec.seed, epoch, loader, aug_gen)
            loss = train_one_epoch(
                accelerator,
                model,
                loader,
                optimizer,
                scheduler,
                loss_fn,
                meta,
                cfg.augment,
                aug_gen,
                cfg.grad_clip,
                f"{spec.name} epoch {epoch}/{cfg.epochs}",
                progress and main,
            )
            row = {
                "epoch": epoch,
                "train_loss": loss,
                **validate(accelerator, model, setup.val, meta, cfg.eval_batch_size, classes),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - te,
            }
            history.append(row)
            improved = row["val_macro_f1"] > best_f1
            if improved:
                best_f1, best_epoch, bad_epochs = row["val_macro_f1"], epoch, 0
            else:
                bad_epochs += 1
            if main:
                unwrapped = accelerator.unwrap_model(model)
                if improved:
                    best_meta = dataclasses.replace(
                        meta, extra={**meta.extra, "epoch": epoch, "val_macro_f1": best_f1}
                    )
                    save_checkpoint(out_dir / FILES["checkpoint"], unwrapped, best_meta)
                save_checkpoint(
                    last,
                    unwrapped,
                    meta,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    epoch=epoch,
                    best_f1=best_f1,
                    best_epoch=best_epoch,
                    bad_epochs=bad_epochs,
                    history=history,
                    fingerprint=setup.fingerprint,
                    mlflow_run_id=tracker.run_id,
                    rng_state=torch.get_rng_state(),
                )
                tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                logger.info(
                    "%s epoch %d: loss %.3f, val loss %.3f, val acc %.3f, val macro-F1 %.3f%s",
                    spec.name,
                    epoch,
                    row["train_loss"],
                    row["val_loss"],
                    row["val_accuracy"],
                    row["val_macro_f1"],
                    " *" if improved else "",
                )
            accelerator.wait_for_everyone()
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        result = finish_run(
            accelerator, model, setup, out_dir, cfg, classes, history, best_epoch, tracker, t0
        )
        ok = True
        return result
    finally:
        if not ok:
            tracker.finish("KILLED")
