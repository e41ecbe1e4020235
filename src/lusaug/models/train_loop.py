"""Train one prepared classifier run with accelerate: :func:`train_classifier` and its phases.

One loop for every case: CPU here, GPUs with ``accelerate launch --multi_gpu`` elsewhere, optional
bf16 autocast. AdamW with linear warm-up then cosine decay; early stopping on validation macro-F1;
after every epoch the best weights (``model.pt``) and the full training state (``last.pt``:
optimizer, scheduler, epoch, early-stopping counters, history, RNG state) are written atomically.
``resume=True`` continues an interrupted run from ``last.pt`` when it belongs to the same run
(same fingerprint of params, data and strategy inputs); otherwise training starts afresh.

The phases, in the order :func:`train_classifier` runs them: :func:`build_loop` (accelerator,
model, optimizer, scheduler, loader and loss: the objects the epochs work on), :func:`restore`
(the training state of an interrupted run, from ``last.pt``), :func:`start_tracking` (the
MLflow run, its params and the summary line before training), :func:`run_epoch` (one epoch and
its validation; :class:`~lusaug.models.epochs.Progress` keeps the early-stopping counters) and
:func:`checkpoint_epoch` (``model.pt`` when validation improved, ``last.pt`` always);
:func:`lusaug.models.run_files.finish_run` then writes the run's files.
:mod:`lusaug.models.epochs` holds what an epoch itself does.

Outputs in ``out_dir`` (a finished run has no ``last.pt``): ``model.pt`` (best weights,
:func:`lusaug.models.classifier.load_classifier` reads it), ``history.csv``,
``val_predictions.csv``, ``val_metrics.json``, ``classification_report.txt``,
``val_confusion.png``, ``run.json`` (what was run, the fingerprint) and ``execution.json`` (wall
times and MLflow ids: not part of the result, DVC does not hash it).

Repeatability: the global torch generator is seeded from the run's seed just before the model is
built, and ``last.pt`` stores the global RNG state after every epoch; a resumed run restores it
after everything is built, so it trains on exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lusaug.core.config import TrainParams
from lusaug.core.utils import EXECUTION_FILE
from lusaug.models.classifier import build_classifier, load_checkpoint, save_checkpoint
from lusaug.models.epochs import (
    EpochSampler,
    Loop,
    Progress,
    lr_lambda,
    make_accelerator,
    seed_epoch,
    train_one_epoch,
    validate,
)
from lusaug.models.frame_sets import SYNTHETIC_PATIENT, IndexedFrames
from lusaug.models.mlflow_runs import RunTracking, TrainTracker
from lusaug.models.run_files import FILES, TrainResult, finish_run
from lusaug.models.run_setup import RunSetup
from lusaug.models.strategies import sample_weights

logger = logging.getLogger(__name__)


def resume_state(last: Path, fingerprint: str, resume: bool) -> dict[str, Any] | None:
    """The state in ``last`` when resuming and it belongs to this run (same fingerprint)."""
    if not (resume and last.exists()):
        return None
    state = load_checkpoint(last)
    if state.get("fingerprint") == fingerprint:
        return state
    logger.warning("%s belongs to a different run (params or data changed): fresh start", last)
    return None


def build_loop(setup: RunSetup, cfg: TrainParams, classes: list[str]) -> Loop:
    """Accelerator, freshly initialised model (seeded by the run's seed), AdamW, the epoch
    sampler's loader, the warm-up + cosine schedule and the (weighted) loss."""
    spec, plan, train = setup.spec, setup.plan, setup.train
    accelerator = make_accelerator(cfg.precision)
    torch.manual_seed(spec.seed)
    model = build_classifier(setup.meta)
    lr = plan.lr if plan.lr is not None else cfg.lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
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
    return Loop(accelerator, model, optimizer, scheduler, loader, loss_fn, lr, steps)


def restore(loop: Loop, state: dict[str, Any], run: str) -> Progress:
    """Weights, optimizer, scheduler, counters and the global RNG state from ``last.pt``."""
    loop.accelerator.unwrap_model(loop.model).load_state_dict(state["state_dict"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    progress = Progress(
        epoch=int(state["epoch"]),
        best_f1=float(state["best_f1"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        history=[dict(h) for h in state["history"]],
    )
    torch.set_rng_state(state["rng_state"])
    logger.info(
        "resuming %s after epoch %d (best val macro-F1 %.3f)",
        run,
        progress.epoch,
        progress.best_f1,
    )
    return progress


def start_tracking(
    loop: Loop,
    setup: RunSetup,
    cfg: TrainParams,
    classes: list[str],
    tracking: RunTracking | None,
    resume_run_id: str | None,
) -> TrainTracker:
    """The run's MLflow run (continued when resuming) with what this run trains on, and the
    ``***** training *****`` summary line (main process only)."""
    spec, plan, meta = setup.spec, setup.plan, setup.meta
    tags = {
        "strategy": setup.strategy.name,
        "architecture": spec.arch,
        "seed": spec.seed,
        "model": meta.model,
        "run": spec.name,
        "fold": "" if spec.fold is None else spec.fold,
        "tuned_on": setup.tuned_on,
    }
    main = loop.accelerator.is_main_process
    tracker = TrainTracker(tracking if main else None, spec.name, tags, resume_run_id)
    if tracking is not None and setup.n_synthetic:
        rows = setup.train.frames[
            setup.train.frames["patient_id"].str.startswith(SYNTHETIC_PATIENT)
        ]
        tracker.log_synthetic(
            tracking.root, list(rows["path"]), setup.strategy.generator, list(rows["label"])
        )
    tracker.log_params(
        {
            "run.loss_weights": plan.loss_weights,
            "run.oversample": plan.oversample,
            "run.lr": loop.lr,
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
            loop.steps,
            None if plan.loss_weights is None else [round(w, 2) for w in plan.loss_weights],
            plan.oversample,
            loop.lr,
            cfg.precision,
        )
    return tracker


def run_epoch(
    loop: Loop,
    setup: RunSetup,
    cfg: TrainParams,
    classes: list[str],
    epoch: int,
    progress: bool,
) -> dict[str, float]:
    """Seed, train and validate ``epoch``; returns its history row."""
    spec, meta = setup.spec, setup.meta
    te = time.perf_counter()
    seed_epoch(spec.seed, epoch, loop.loader, loop.aug_gen)
    loss = train_one_epoch(
        loop,
        meta,
        cfg.augment,
        cfg.grad_clip,
        f"{spec.name} epoch {epoch}/{cfg.epochs}",
        progress,
    )
    return {
        "epoch": epoch,
        "train_loss": loss,
        **validate(loop.accelerator, loop.model, setup.val, meta, cfg.eval_batch_size, classes),
        "lr": loop.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - te,
    }


def checkpoint_epoch(
    loop: Loop,
    setup: RunSetup,
    out_dir: Path,
    progress: Progress,
    improved: bool,
    tracker: TrainTracker,
) -> None:
    """After an epoch (main process): ``model.pt`` if it improved, ``last.pt`` (the full state,
    the global RNG state included), its metrics to MLflow and its log line."""
    row, meta = progress.history[-1], setup.meta
    unwrapped = loop.accelerator.unwrap_model(loop.model)
    if improved:
        best_meta = dataclasses.replace(
            meta, extra={**meta.extra, "epoch": progress.epoch, "val_macro_f1": progress.best_f1}
        )
        save_checkpoint(out_dir / FILES["checkpoint"], unwrapped, best_meta)
    save_checkpoint(
        out_dir / FILES["last"],
        unwrapped,
        meta,
        optimizer=loop.optimizer.state_dict(),
        scheduler=loop.scheduler.state_dict(),
        epoch=progress.epoch,
        best_f1=progress.best_f1,
        best_epoch=progress.best_epoch,
        bad_epochs=progress.bad_epochs,
        history=progress.history,
        fingerprint=setup.fingerprint,
        mlflow_run_id=tracker.run_id,
        rng_state=torch.get_rng_state(),
    )
    tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=progress.epoch)
    logger.info(
        "%s epoch %d: loss %.3f, val loss %.3f, val acc %.3f, val macro-F1 %.3f%s",
        setup.spec.name,
        progress.epoch,
        row["train_loss"],
        row["val_loss"],
        row["val_accuracy"],
        row["val_macro_f1"],
        " *" if improved else "",
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
    for name in [*FILES.values(), EXECUTION_FILE]:
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
        setup: From :func:`lusaug.models.run_setup.prepare_run`.
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
        result = finish_run(loop, setup, out_dir, cfg, classes, done, tracker, t0)
        ok = True
        return result
    finally:
        if not ok:
            tracker.finish("KILLED")
