"""The pieces of one training loop: seeding per epoch, the sampler, the schedule, an epoch, a
validation pass (as timm's ``main`` hands off to ``train_one_epoch`` and ``validate``).

Repeatability: at the start of every epoch the shuffling, augmentation and global torch
generators are re-seeded from (seed, epoch). Same seed, same data and ``num_workers=0`` on CPU
therefore give identical weights, and a resumed run draws exactly what the uninterrupted run
would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lusaug.core.config import PRECISIONS, AugmentParams
from lusaug.models.augment import augment_batch
from lusaug.models.classifier import ClassifierMeta
from lusaug.models.frame_sets import FrameSet, predict_proba, to_input
from lusaug.models.statistics import point_metrics

# Large primes mix (seed, epoch) into one generator seed; +1/+2 separate the generators.
_SEED_MIX, _EPOCH_MIX = 1_000_003, 7919
_AUG_OFFSET, _TORCH_OFFSET = 1, 2


@dataclass
class Loop:
    """The objects one run's epochs work on, built once before the first epoch."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: Any  # accelerate's data loader over the training frames
    loss_fn: torch.nn.Module
    lr: float  # peak learning rate (the strategy's plan or train.lr)
    steps: int  # optimizer steps per epoch
    aug_gen: torch.Generator = field(default_factory=torch.Generator)  # augmentation draws


@dataclass
class Progress:
    """Where training stands: the last finished epoch, the best one, the history."""

    epoch: int = 0  # last finished epoch (0 = none yet)
    best_f1: float = -1.0  # best validation macro-F1 so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    history: list[dict[str, float]] = field(default_factory=list)

    def should_stop(self, patience: int) -> bool:
        """Early stopping: ``patience`` epochs without a better validation macro-F1."""
        return patience > 0 and self.bad_epochs >= patience

    def record(self, row: dict[str, float]) -> bool:
        """Add one epoch's row; returns whether its validation macro-F1 is the best so far."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        improved = row["val_macro_f1"] > self.best_f1
        if improved:
            self.best_f1, self.best_epoch, self.bad_epochs = row["val_macro_f1"], self.epoch, 0
        else:
            self.bad_epochs += 1
        return improved


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * _SEED_MIX + epoch * _EPOCH_MIX) % (2**63 - 1)


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def make_accelerator(precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = PRECISIONS[precision]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed) != mixed:
        # One process may train with several precisions (tests, benchmarks): reset the singleton.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Shuffled (or class-balanced with replacement) order, re-seeded for every epoch."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None) -> None:
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.generator = torch.Generator()
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(epoch_seed(self.seed, epoch))

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


def seed_epoch(seed: int, epoch: int, loader: Any, aug_gen: torch.Generator) -> None:
    """Re-seed every generator of ``epoch`` (accelerate's loader re-calls sampler.set_epoch with
    its own pass count: keep that equal to our epoch so a resumed run draws the same order)."""
    loader.set_epoch(epoch)
    aug_gen.manual_seed(epoch_seed(seed, epoch) + _AUG_OFFSET)
    torch.manual_seed(epoch_seed(seed, epoch) + _TORCH_OFFSET)


def train_one_epoch(
    loop: Loop,
    meta: ClassifierMeta,
    augment: AugmentParams,
    grad_clip: float,
    desc: str,
    progress: bool,
) -> float:
    """One pass over the training batches; returns the mean training loss."""
    accelerator, model, optimizer, scheduler = (
        loop.accelerator,
        loop.model,
        loop.optimizer,
        loop.scheduler,
    )
    model.train()
    total, seen = 0.0, 0
    bar = tqdm(loop.loader, desc=desc, leave=False, disable=not progress)
    for images, labels in bar:
        x = augment_batch(images.float() / 255.0, augment, loop.aug_gen)
        x = to_input(x, meta.mean, meta.std).to(accelerator.device)
        y = labels.to(accelerator.device)
        with accelerator.autocast():
            logits = model(x)
        loss = loop.loss_fn(logits.float(), y)
        accelerator.backward(loss)
        if grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach()) * len(y)
        seen += len(y)
    return total / max(seen, 1)


@torch.no_grad()
def validate(
    accelerator: Any,
    model: torch.nn.Module,
    val: FrameSet,
    meta: ClassifierMeta,
    batch_size: int,
    classes: list[str],
) -> dict[str, float]:
    """Validation loss, accuracy, macro-F1 and balanced accuracy of the current weights."""
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
