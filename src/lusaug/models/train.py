"""Train one classifier run (strategy x architecture x seed) with accelerate.

One loop for every case: CPU here, GPUs with ``accelerate launch --multi_gpu`` elsewhere, optional
bf16 autocast. AdamW with linear warm-up then cosine decay; early stopping on validation macro-F1;
after every epoch the best weights (``model.pt``) and the full training state (``last.pt``:
optimizer, scheduler, epoch, early-stopping counters, history, RNG state) are written atomically.
``resume=True`` continues an interrupted run from ``last.pt`` when it belongs to the same run
(same fingerprint of params, data and strategy inputs); otherwise training starts afresh.

Repeatability: the model is initialised from ``seed``, and at the start of every epoch the
shuffling, augmentation and global torch generators are re-seeded from (seed, epoch). Same seed,
same data and ``num_workers=0`` on CPU therefore give identical weights, and a resumed run draws
exactly what the uninterrupted run would have.

Outputs in ``out_dir`` (a finished run has no ``last.pt``):
``model.pt`` (best weights, :func:`lusaug.models.classifier.load_classifier` reads it),
``history.csv`` (per epoch), ``val_predictions.csv``, ``val_metrics.json``,
``classification_report.txt``, ``val_confusion.png`` and ``run.json`` (what was run, MLflow ids).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lusaug.config import PRECISIONS, Params, as_flat_dict
from lusaug.models.augment import augment_batch
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
    predict_proba,
    to_input,
)
from lusaug.models.metrics import point_metrics
from lusaug.models.strategies import (
    Strategy,
    StrategyError,
    TrainingPlan,
    parse_strategy,
    plan_for,
    sample_weights,
)
from lusaug.utils import atomic_path, write_json

logger = logging.getLogger(__name__)

FILES = {
    "checkpoint": "model.pt",
    "last": "last.pt",
    "history": "history.csv",
    "val_predictions": "val_predictions.csv",
    "val_metrics": "val_metrics.json",
    "report": "classification_report.txt",
    "confusion": "val_confusion.png",
    "run": "run.json",
}


def run_name(strategy: str, arch: str, seed: int) -> str:
    """Folder / MLflow name of a run, as DVC's matrix writes it: ``<strategy>-<arch>-<seed>``."""
    return f"{parse_strategy(strategy).name}-{arch}-{seed}"


def parse_run_name(name: str) -> tuple[str, str, int]:
    """Inverse of :func:`run_name` (strategy names may contain '-', arch names may not)."""
    strategy, arch, seed = name.rsplit("-", 2)
    return strategy, arch, int(seed)


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


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def _lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(params: Params, strategy: Strategy, arch: str, seed: int, extra: dict) -> str:
    train = dataclasses.asdict(params.train)
    for key in ("strategies", "tuned_strategies", "generators", "seeds", "architectures"):
        train.pop(key)  # the matrix lists do not change what this one run does
    blob = {
        "base": dataclasses.asdict(params.base) | {"profile": None, "workers": None},
        "train": train,
        "arch": dataclasses.asdict(params.train.architectures[arch]),
        "strategy": strategy.name,
        "seed": seed,
        **extra,
    }
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def make_accelerator(precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = PRECISIONS[precision]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed) != mixed:
        # One process may train with several precisions (tests, benchmarks): reset the singleton.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)


class _EpochSampler(torch.utils.data.Sampler[int]):
    """Shuffled (or class-balanced with replacement) order, re-seeded for every epoch."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None) -> None:
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.generator = torch.Generator()
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(_epoch_seed(self.seed, epoch))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if self.weights is None:
            return iter(torch.randperm(self.n, generator=self.generator).tolist())
        # the same draw torch's WeightedRandomSampler makes, with our per-epoch generator
        sampler = torch.utils.data.WeightedRandomSampler(
            self.weights, self.n, replacement=True, generator=self.generator
        )
        return iter(list(sampler))


def _clean(out_dir: Path) -> None:
    """Remove this module's files from a previous run (only known names: never a whole dir)."""
    for name in FILES.values():
        (out_dir / name).unlink(missing_ok=True)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def train_classifier(
    params: Params,
    splits_csv: Path | str,
    out_dir: Path | str,
    strategy: str,
    arch: str,
    seed: int,
    *,
    tuned_path: Path | str | None = None,
    tuned_weights: dict[str, float] | None = None,
    synthetic_dir: Path | str = "data/synthetic",
    resume: bool = False,
    tracking: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    root: Path | str = ".",
    progress: bool = True,
) -> TrainResult:
    """Train one run and write its outputs; returns what the run achieved on validation.

    Args:
        params: the typed config (``params.train`` and ``params.base`` are read).
        splits_csv: ``data/splits.csv`` (frames of the train and val splits are read).
        out_dir: the run's folder (``models/classifiers/<strategy>-<arch>-<seed>``).
        strategy: a strategy name (see :mod:`lusaug.models.strategies`).
        arch: a key of ``train.architectures``.
        seed: training seed.
        tuned_path: tuned-weights YAML for ``class_weights_tuned`` (default params/tuned.yaml).
        tuned_weights: explicit class weights, overriding the strategy's (used by ``tune``).
        synthetic_dir: folder holding ``<G>/kept/`` for ``synthetic-<G>``.
        resume: continue from ``out_dir/last.pt`` when it belongs to this run.
        tracking: log to MLflow (experiment ``lusaug-classifiers``).
        on_epoch_end: called with (epoch, epoch metrics) after each epoch's checkpoint; it may
            raise to stop training (e.g. ``optuna.TrialPruned``); the checkpoint is kept.
        root: repository root (for the default MLflow store, git commit and data hash).
        progress: show a progress bar.
    """
    t0 = time.perf_counter()
    cfg = params.train
    strat = parse_strategy(strategy)
    if arch not in cfg.architectures:
        raise StrategyError(
            f"unknown architecture {arch!r}; train.architectures has {sorted(cfg.architectures)}"
        )
    arch_cfg = cfg.architectures[arch]
    classes = params.base.classes
    size = params.base.image_size
    name = f"{strat.name}-{arch}-{seed}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)

    # ---- data and strategy ----
    train_set = load_split(splits_csv, "train", classes, size)
    val_set = load_split(splits_csv, "val", classes, size)
    extra: dict[str, Any] = {"splits": _file_digest(Path(splits_csv))}
    n_synthetic = 0
    if strat.kind == "synthetic":
        target = classes.index(params.base.target_class)
        synth = load_synthetic(
            synthetic_dir,
            strat.generator,
            target,
            params.base.target_class,
            size,
            cfg.synthetic_per_class,
            params.base.seed,
        )
        n_synthetic = len(synth)
        extra["synthetic"] = sorted(Path(p).name for p in synth.frames["path"])
        train_set = concat(train_set, synth)
    counts = train_set.class_counts(len(classes))
    plan = plan_for(strat, counts, classes, tuned_path, tuned_weights)
    extra["plan"] = [plan.loss_weights, plan.oversample, plan.lr]
    fingerprint = _fingerprint(params, strat, arch, seed, extra)
    lr = plan.lr if plan.lr is not None else cfg.lr

    # ---- resume or start afresh ----
    state: dict[str, Any] | None = None
    last = out_dir / FILES["last"]
    if resume and last.exists():
        state = load_checkpoint(last)
        if state.get("fingerprint") != fingerprint:
            logger.warning(
                "%s belongs to a different run (params or data changed): fresh start", last
            )
            state = None
    if state is None:
        _clean(out_dir)

    accelerator = make_accelerator(cfg.precision)
    torch.manual_seed(seed)
    meta = ClassifierMeta.for_architecture(params, arch, strategy=strat.name, seed=seed, run=name)
    model = build_classifier(meta)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    sampler = _EpochSampler(
        len(train_set),
        seed,
        sample_weights(train_set.labels.numpy(), len(classes)) if plan.oversample else None,
    )
    loader = torch.utils.data.DataLoader(
        IndexedFrames(train_set),
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        # a last batch of one frame breaks BatchNorm where the feature map is 1x1 (32 px ResNet)
        drop_last=len(train_set) % cfg.batch_size == 1,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # batches stay on the CPU for augmentation (its generator lives there), then move
    loader = accelerator.prepare_data_loader(loader, device_placement=False)
    steps_per_epoch = max(len(loader), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _lr_lambda(
            cfg.epochs * steps_per_epoch,
            round(cfg.warmup_epochs * steps_per_epoch),
            cfg.min_lr_ratio,
        ),
    )
    weight = (
        None if plan.loss_weights is None else torch.tensor(plan.loss_weights, dtype=torch.float32)
    )
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=weight.to(accelerator.device) if weight is not None else None
    )

    start_epoch, best_f1, best_epoch, bad_epochs = 0, -1.0, 0, 0
    history: list[dict[str, float]] = []
    resume_run_id = None
    if state is not None:
        accelerator.unwrap_model(model).load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_f1 = int(state["epoch"]), float(state["best_f1"])
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        history = [dict(h) for h in state["history"]]
        resume_run_id = state.get("mlflow_run_id")
        torch.set_rng_state(state["rng_state"])
        logger.info(
            "resuming %s after epoch %d (best val macro-F1 %.3f)", name, start_epoch, best_f1
        )

    from lusaug.models.tracking import TrainTracker

    tracker = TrainTracker(
        params,
        name,
        {
            "strategy": strat.name,
            "architecture": arch,
            "seed": seed,
            "model": arch_cfg.model,
            "run": name,
        },
        root=root,
        resume_run_id=resume_run_id,
        enabled=tracking and accelerator.is_main_process,
    )
    tracker.log_params(
        {
            "run.loss_weights": plan.loss_weights,
            "run.oversample": plan.oversample,
            "run.lr": lr,
            "run.synthetic_frames": n_synthetic,
            **{f"run.train_frames.{c}": int(n) for c, n in zip(classes, counts, strict=True)},
        }
    )
    if accelerator.is_main_process:
        logger.info(
            "***** training %s *****  frames %s (synthetic %d), %d epochs x %d steps, "
            "loss weights %s, oversample %s, lr %g, %s",
            name,
            dict(zip(classes, counts.tolist(), strict=True)),
            n_synthetic,
            cfg.epochs,
            steps_per_epoch,
            None if plan.loss_weights is None else [round(w, 2) for w in plan.loss_weights],
            plan.oversample,
            lr,
            cfg.precision,
        )
    aug_gen = torch.Generator()
    ok = False
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if cfg.patience > 0 and bad_epochs >= cfg.patience:
                break
            te = time.perf_counter()
            # accelerate's loader re-calls sampler.set_epoch(its iteration) on every pass: keep
            # that iteration equal to our epoch, so a resumed run draws the same order
            loader.set_epoch(epoch)
            aug_gen.manual_seed(_epoch_seed(seed, epoch) + 1)
            torch.manual_seed(_epoch_seed(seed, epoch) + 2)
            model.train()
            total, seen = 0.0, 0
            bar = tqdm(
                loader,
                desc=f"{name} epoch {epoch}/{cfg.epochs}",
                leave=False,
                disable=not (progress and accelerator.is_main_process),
            )
            for images, labels in bar:
                x = augment_batch(images.float() / 255.0, cfg.augment, aug_gen)
                x = to_input(x, meta.mean, meta.std).to(accelerator.device)
                y = labels.to(accelerator.device)
                with accelerator.autocast():
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                accelerator.backward(loss)
                if cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                total += float(loss.detach()) * len(y)
                seen += len(y)
            row = _validate(accelerator, model, val_set, meta, cfg.eval_batch_size, classes)
            row = {
                "epoch": epoch,
                "train_loss": total / max(seen, 1),
                **row,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - te,
            }
            history.append(row)
            improved = row["val_macro_f1"] > best_f1
            if improved:
                best_f1, best_epoch, bad_epochs = row["val_macro_f1"], epoch, 0
            else:
                bad_epochs += 1
            if accelerator.is_main_process:
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
                    fingerprint=fingerprint,
                    mlflow_run_id=tracker.run_id,
                    rng_state=torch.get_rng_state(),
                )
                tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                logger.info(
                    "%s epoch %d: loss %.3f, val loss %.3f, val acc %.3f, val macro-F1 %.3f%s",
                    name,
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
        result = _finish(
            accelerator,
            model,
            meta,
            out_dir,
            val_set,
            params,
            name,
            strat,
            arch,
            seed,
            history,
            best_epoch,
            plan,
            counts,
            n_synthetic,
            tracker,
            fingerprint,
            t0,
        )
        ok = True
        return result
    finally:
        if not ok:
            tracker.finish("KILLED")


@torch.no_grad()
def _validate(
    accelerator: Any,
    model: torch.nn.Module,
    val: FrameSet,
    meta: ClassifierMeta,
    batch_size: int,
    classes: list[str],
) -> dict[str, float]:
    net = accelerator.unwrap_model(model)
    with accelerator.autocast():
        prob = predict_proba(net, val.images, meta.mean, meta.std, batch_size)
    y = val.labels.numpy()
    m = point_metrics(y, prob, classes, val.frames["video_id"].to_numpy())
    nll = -np.log(np.clip(prob[np.arange(len(y)), y], 1e-12, None)).mean()
    return {
        "val_loss": float(nll),
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["f1_macro"],
        "val_balanced_accuracy": m["balanced_accuracy"],
    }


def _finish(
    accelerator: Any,
    model: torch.nn.Module,
    meta: ClassifierMeta,
    out_dir: Path,
    val: FrameSet,
    params: Params,
    name: str,
    strat: Strategy,
    arch: str,
    seed: int,
    history: list[dict[str, float]],
    best_epoch: int,
    plan: TrainingPlan,
    counts: np.ndarray,
    n_synthetic: int,
    tracker: Any,
    fingerprint: str,
    t0: float,
) -> TrainResult:
    """Reload the best weights, predict val, write the run's files, close the MLflow run."""
    from sklearn.metrics import classification_report, confusion_matrix

    from lusaug.models import plots

    classes = params.base.classes
    ckpt_path = out_dir / FILES["checkpoint"]
    net = accelerator.unwrap_model(model)
    net.load_state_dict(load_checkpoint(ckpt_path)["state_dict"])
    net.eval()
    hist = pd.DataFrame(history)
    if not accelerator.is_main_process:
        return TrainResult(name, out_dir, ckpt_path, best_epoch, len(history), {}, hist, None, 0.0)
    prob = predict_proba(net, val.images, meta.mean, meta.std, params.train.eval_batch_size)
    y = val.labels.numpy()
    pred = prob.argmax(1)
    preds = val.frames[["path", "video_id", "patient_id", "label"]].copy()
    preds["predicted"] = [classes[i] for i in pred]
    for k, c in enumerate(classes):
        preds[f"prob_{c}"] = prob[:, k]
    metrics = point_metrics(y, prob, classes, val.frames["video_id"].to_numpy())
    seconds = time.perf_counter() - t0
    summary = {
        "run": name,
        "strategy": strat.name,
        "architecture": arch,
        "seed": seed,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "seconds": round(seconds, 2),
        "train_frames": dict(zip(classes, counts.tolist(), strict=True)),
        "synthetic_frames": n_synthetic,
        "loss_weights": plan.loss_weights,
        "oversample": plan.oversample,
        "val": metrics,
    }
    report = classification_report(
        y, pred, labels=list(range(len(classes))), target_names=classes, zero_division=0, digits=3
    )
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    _write_csv(hist, out_dir / FILES["history"])
    _write_csv(preds, out_dir / FILES["val_predictions"])
    write_json(out_dir / FILES["val_metrics"], summary)
    with atomic_path(out_dir / FILES["report"]) as tmp:
        tmp.write_text(report)
    plots.save(
        plots.confusion_figure(cm, classes, f"{name} (validation)"), out_dir / FILES["confusion"]
    )
    tracker.log_metrics({f"best_val_{k}": v for k, v in metrics.items()})
    tracker.log_metrics({"best_epoch": best_epoch, "train_seconds": seconds})
    tracker.log_artifact(out_dir / FILES["confusion"], "validation")
    tracker.log_artifact(out_dir / FILES["history"], "validation")
    tracker.log_text(report, "validation/classification_report.txt")
    if params.train.log_model:
        # batch 2: an example of batch 1 makes torch.export specialise the batch dimension to 1
        example = to_input(val.images[:2], meta.mean, meta.std).numpy()
        tracker.log_model(net, example, params.train.log_model_format)
    run_info = {
        **{k: summary[k] for k in ("run", "strategy", "architecture", "seed", "best_epoch")},
        "model": meta.model,
        "kwargs": meta.kwargs,
        "checkpoint": FILES["checkpoint"],
        "mlflow_run_id": tracker.run_id,
        "mlflow_parent_run_id": tracker.parent_run_id,
        "fingerprint": fingerprint,
        "params": {
            k: v
            for k, v in as_flat_dict(params.train).items()
            if not k.startswith("architectures.")
        },
    }
    write_json(out_dir / FILES["run"], run_info)
    tracker.finish("FINISHED")
    (out_dir / FILES["last"]).unlink(missing_ok=True)
    return TrainResult(
        name, out_dir, ckpt_path, best_epoch, len(history), metrics, hist, tracker.run_id, seconds
    )
