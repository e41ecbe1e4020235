"""One resumable training loop for every diffusion model here (DDPMs, the base, fine-tuning).

It follows diffusers' ``train_unconditional.py``: AdamW with warm-up + cosine decay, gradient
clipping, ``EMAModel`` with warm-up, ``checkpoint-{step}`` folders pruned to
``checkpoints_total_limit``, resume from the latest. What differs: batches are drawn with
replacement by one seeded generator (a training set can hold 3 frames), a checkpoint carries a
fingerprint of config + data and is ignored when they differ, and checkpoints are plain tensors
that load with ``torch.load(weights_only=True)``. The model-specific part (data, noise,
conditioning, loss) is a ``loss_fn(generator) -> loss`` closure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lusaug.core.utils import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "state.pt"
GRAD_CLIP = 1.0  # max gradient norm, as diffusers' examples
WEIGHT_DECAY = 1e-2  # AdamW weight decay, as diffusers' examples
EMA_POWER = 3 / 4  # EMA warm-up power (diffusers' default for small models)

# Called with (step, losses so far) at every checkpoint while the EMA weights are loaded.
CheckpointHook = Callable[[int, list[float]], None]


@dataclass(frozen=True)
class Checkpointing:
    """Where a training writes ``checkpoint-<step>`` folders and whether it resumes from them."""

    folder: Path | str | None = None  # None = no checkpoints
    resume: bool = False  # continue from the latest checkpoint whose fingerprint matches
    fingerprint: str = ""  # identifies config + data; a checkpoint with another one is ignored


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a model's config section."""

    train_steps: int
    batch_size: int
    learning_rate: float
    lr_warmup_steps: int
    ema_decay: float
    mixed_precision: str
    checkpoint_every: int
    checkpoints_total_limit: int


@dataclass
class TrainResult:
    """What a training run did (logged to MLflow and generator.json)."""

    losses: list[float]  # loss of every optimiser step, from step 1
    steps: int  # optimiser steps done in total (including resumed ones)
    resumed_from: int  # step of the checkpoint resumed from (0 = fresh start)
    seconds: float  # wall time of this process's training
    images_per_second: float  # training throughput of this process
    checkpoints: list[int] = field(default_factory=list)  # steps checkpointed by this process


def settings_of(cfg: Any, train_steps: int | None = None, **overrides: Any) -> LoopSettings:
    """The loop settings of a config section (fields missing from it come from ``overrides``)."""
    values = {k: getattr(cfg, k) for k in LoopSettings.__dataclass_fields__ if hasattr(cfg, k)}
    values.update(overrides)
    if train_steps is not None:
        values["train_steps"] = train_steps
    return LoopSettings(**values)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of configs/data ids: a checkpoint resumes only under the same one."""

    def encode(o: Any) -> Any:
        return asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)

    blob = json.dumps(parts, sort_keys=True, default=encode)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _checkpoints(folder: Path | None) -> list[tuple[int, Path]]:
    if folder is None or not folder.is_dir():
        return []
    found = []
    for p in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = p.name.removeprefix(CHECKPOINT_PREFIX)
        if suffix.isdigit() and (p / STATE_FILE).exists():
            found.append((int(suffix), p))
    return sorted(found)


def latest_checkpoint(folder: Path | str | None) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder, or None."""
    found = _checkpoints(Path(folder) if folder is not None else None)
    return found[-1][1] if found else None


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


@dataclass
class _Trainables:
    """What a checkpoint holds besides its step: the modules, optimiser, schedule, EMA, the
    batch generator and the losses so far."""

    modules: dict[str, torch.nn.Module]
    params: list[torch.nn.Parameter]  # the modules' trainable parameters
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: Any  # diffusers.training_utils.EMAModel
    gen: torch.Generator  # every random draw of loss_fn
    losses: list[float] = field(default_factory=list)

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)


def _trainables(
    modules: dict[str, torch.nn.Module],
    params: list[torch.nn.Parameter],
    cfg: LoopSettings,
    total: int,
    seed: int,
) -> _Trainables:
    from diffusers.training_utils import EMAModel

    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.lr_warmup_steps, total))
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=EMA_POWER)
    gen = torch.Generator().manual_seed(seed)
    return _Trainables(modules, params, opt, sched, ema, gen)


def _restore(t: _Trainables, ckpt_dir: Path | None, run_fingerprint: str, total: int) -> int:
    """Load the latest checkpoint made with ``run_fingerprint``; returns its step (0 = none)."""
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is None:
        return 0
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != run_fingerprint:
        logger.warning("ignoring %s: it was made with another config or data", ckpt)
        return 0
    for name, m in t.modules.items():
        m.load_state_dict(state["modules"][name])
    t.opt.load_state_dict(state["optimizer"])
    t.sched.load_state_dict(state["lr_scheduler"])
    t.ema.load_state_dict(state["ema"])
    t.gen.set_state(state["generator"])
    t.losses = [float(v) for v in state["losses"]]
    start = int(state["step"])
    logger.info("resuming from %s (step %d of %d)", ckpt, start, total)
    return start


def _save_checkpoint(
    t: _Trainables, ckpt_dir: Path, step: int, run_fingerprint: str, keep: int
) -> None:
    """Write ``checkpoint-<step>`` atomically, then prune all but the newest ``keep``."""
    state = {
        "step": step,
        "modules": {n: m.state_dict() for n, m in t.modules.items()},
        "optimizer": t.opt.state_dict(),
        "lr_scheduler": t.sched.state_dict(),
        "ema": t.ema.state_dict(),
        "generator": t.gen.get_state(),
        "losses": torch.tensor(t.losses, dtype=torch.float64),
        "fingerprint": run_fingerprint,
    }
    with atomic_path(ckpt_dir / f"{CHECKPOINT_PREFIX}{step}", is_dir=True) as tmp:
        torch.save(state, tmp / STATE_FILE)
    for _, old in _checkpoints(ckpt_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _call_with_ema(t: _Trainables, hook: CheckpointHook, step: int) -> None:
    """Run ``hook`` with the EMA weights loaded and the modules in eval mode, then switch back."""
    t.ema.store(t.params)
    t.ema.copy_to(t.params)
    t.train(False)
    try:
        hook(step, list(t.losses))
    finally:
        t.ema.restore(t.params)
        t.train()


def _step(t: _Trainables, acc: Any, loss_fn: Callable[[torch.Generator], torch.Tensor]) -> float:
    """One optimiser step (clipped), the schedule and the EMA; returns the loss."""
    with acc.autocast():
        loss = loss_fn(t.gen)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.params, GRAD_CLIP)
    t.opt.step()
    t.sched.step()
    t.opt.zero_grad(set_to_none=True)
    t.ema.step(t.params)
    return float(loss.detach())


def train_loop(
    modules: dict[str, torch.nn.Module],
    loss_fn: Callable[[torch.Generator], torch.Tensor],
    cfg: LoopSettings,
    seed: int,
    checkpoints: Checkpointing | None = None,
    on_checkpoint: CheckpointHook | None = None,
    progress: bool = True,
    desc: str = "diffusion",
) -> TrainResult:
    """Train the trainable parameters of ``modules`` with ``loss_fn``; EMA weights at the end.

    Args:
        modules: named modules whose ``requires_grad`` parameters train (and are checkpointed);
            on return they hold the EMA weights and are in eval mode.
        loss_fn: draws one batch (all randomness from the generator it gets) and returns a loss.
        cfg: steps, batch size, learning rate, EMA, checkpoint cadence.
        seed: seeds the generator handed to ``loss_fn``.
        checkpoints: where checkpoints go and whether to resume (None = no checkpoints).
        on_checkpoint: hook for sample grids / logging at each checkpoint (EMA weights loaded).
        progress: show a progress bar.
        desc: the progress bar's label.
    """
    from accelerate import Accelerator

    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train_loop: no trainable parameters")
    total = int(cfg.train_steps)
    ck = checkpoints or Checkpointing()
    ckpt_dir = Path(ck.folder) if ck.folder is not None else None
    t = _trainables(modules, params, cfg, total, seed)
    start = _restore(t, ckpt_dir, ck.fingerprint, total) if ck.resume else 0
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    t.ema.to(acc.device)
    result = TrainResult(t.losses, start, start, 0.0, 0.0)
    logger.info(
        "***** %s training: %d steps x %d, lr %g, %d trainable parameters *****",
        desc,
        total,
        cfg.batch_size,
        cfg.learning_rate,
        sum(p.numel() for p in params),
    )
    t.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, total), desc=desc, disable=not progress, initial=start, total=total)
    for step in bar:
        t.losses.append(_step(t, acc, loss_fn))
        bar.set_postfix(loss=f"{t.losses[-1]:.4f}")
        done = step + 1
        if done == total or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            if ckpt_dir is not None:
                _save_checkpoint(t, ckpt_dir, done, ck.fingerprint, cfg.checkpoints_total_limit)
            result.checkpoints.append(done)
            if on_checkpoint is not None:
                _call_with_ema(t, on_checkpoint, done)
    bar.close()
    elapsed = time.perf_counter() - t0
    result.steps = total
    result.seconds = elapsed
    result.images_per_second = (total - start) * cfg.batch_size / elapsed if elapsed > 0 else 0.0
    t.ema.copy_to(params)
    t.train(False)
    return result


def diffusion_target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """What the network regresses: the noise, or the velocity under v-prediction."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


def draw_batch(
    x_all: torch.Tensor, batch_size: int, gen: torch.Generator, hflip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, images) of a batch drawn with replacement, randomly flipped left-right."""
    idx = torch.randint(len(x_all), (batch_size,), generator=gen)
    x0 = x_all[idx]
    if hflip:  # ultrasound is left-right symmetric enough for flips
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    return idx, x0


def noisy_batch(scheduler: Any, x0: torch.Tensor, gen: torch.Generator):
    """(noisy input, timesteps, regression target) for one batch of clean images."""
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
    return scheduler.add_noise(x0, noise, t), t, diffusion_target(scheduler, x0, noise, t)
