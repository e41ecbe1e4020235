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
    accelerator: Any,
    model: torch.nn.Module,
    loader: Any,
    optimizer: Any,
    scheduler: Any,
    loss_fn: torch.nn.Module,
    meta: ClassifierMeta,
    augment: AugmentParams,
    aug_gen: torch.Generator,
    grad_clip: float,
    desc: str,
    progress: bool,
) -> float:
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    for images, labels in bar:
        x = augment_batch(images.float() / 255.0, augment, aug_gen)
        x = to_input(x, meta.mean, meta.std).to(accelerator.device)
        y = labels.to(accelerator.device)
        with accelerator.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), y)
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
