"""Grey-scale DDPMs with diffusers: UNet2DModel + DDPMScheduler, EMA, checkpoints, accelerate.

The training loop follows diffusers' ``train_unconditional.py`` (noise-prediction MSE, AdamW with
warm-up + cosine decay, ``EMAModel`` with warm-up, ``checkpoint-{step}`` folders pruned to
``checkpoints_total_limit``, resume from the latest) with three changes for this project: the
batch is drawn with replacement by a seeded generator (training sets can have 3 images, so epochs
mean little), a checkpoint carries a fingerprint of the config and data and is ignored when they
differ, and checkpoints are plain tensors loadable with ``torch.load(weights_only=True)``.

Unconditional models are saved as a ``DDPMPipeline`` (``DDPMPipeline.from_pretrained`` loads
them); class-conditional ones (``num_class_embeds``) as ``unet/`` + ``scheduler/`` folders, since
``DDPMPipeline`` cannot pass class labels (see sampling.py for the loop that can).
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

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lusaug.config import DdpmParams
from lusaug.utils import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "state.pt"
META_FILE = "generator.json"

# Called with (step, unet holding the EMA weights, losses so far) at every checkpoint.
CheckpointHook = Callable[[int, torch.nn.Module, list[float]], None]


@dataclass
class TrainResult:
    """What a DDPM training run did (logged to MLflow and generator.json)."""

    losses: list[float]  # loss of every optimiser step, from step 1
    steps: int  # optimiser steps done in total (including resumed ones)
    resumed_from: int  # step of the checkpoint resumed from (0 = fresh start)
    seconds: float  # wall time of this process's training
    images_per_second: float  # training throughput of this process
    checkpoints: list[int] = field(default_factory=list)  # steps checkpointed by this process


def build_unet(cfg: DdpmParams, num_classes: int | None = None) -> torch.nn.Module:
    """A 1-channel ``UNet2DModel`` with one level per width; attention at the lowest level."""
    from diffusers import UNet2DModel

    levels = len(cfg.block_out_channels)
    if cfg.resolution % 2 ** (levels - 1):
        raise ValueError(
            f"generate.ddpm.resolution {cfg.resolution} must be divisible by 2**(levels-1) "
            f"for {levels} levels of block_out_channels"
        )
    bad = [w for w in cfg.block_out_channels if w % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"generate.ddpm.norm_num_groups must divide every width; not {bad}")
    down = ["DownBlock2D"] * levels
    if cfg.attention:
        down[-1] = "AttnDownBlock2D"
    up = ["AttnUpBlock2D" if b.startswith("Attn") else "UpBlock2D" for b in reversed(down)]
    return UNet2DModel(
        sample_size=cfg.resolution,
        in_channels=1,
        out_channels=1,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=cfg.norm_num_groups,
        num_class_embeds=num_classes,
    )


def build_scheduler(cfg: DdpmParams) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
    )


def to_model_space(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (N, H, W) frames -> float (N, 1, r, r) in [-1, 1]."""
    from lusaug.generators.data import resize_batch

    small = resize_batch(images, resolution).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(small).unsqueeze(1)


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


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def train_ddpm(
    images: np.ndarray,
    cfg: DdpmParams,
    seed: int,
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    run_fingerprint: str = "",
    on_checkpoint: CheckpointHook | None = None,
    progress: bool = True,
    train_steps: int | None = None,
) -> tuple[torch.nn.Module, Any, TrainResult]:
    """Train a DDPM on uint8 frames; returns (UNet with EMA weights, scheduler, result).

    Args:
        images: uint8 (N, H, W) training frames (any size; resized to ``cfg.resolution``).
        cfg: the ``generate.ddpm`` section.
        seed: seeds weights, batches, noise and timesteps.
        labels: class index per frame for a class-conditional model (with ``num_classes``).
        checkpoint_dir: where ``checkpoint-<step>`` folders go (None = no checkpoints).
        resume: continue from the latest checkpoint whose fingerprint matches.
        run_fingerprint: identifies config + data; a checkpoint with another one is ignored.
        on_checkpoint: hook for sample grids / logging at each checkpoint (EMA weights loaded).
        train_steps: override ``cfg.train_steps`` (benchmarks, tests).
    """
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    if len(images) == 0:
        raise ValueError("train_ddpm needs at least one training image")
    if (labels is None) != (num_classes is None):
        raise ValueError("pass labels and num_classes together for a conditional DDPM")
    total = int(train_steps if train_steps is not None else cfg.train_steps)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    torch.manual_seed(seed)
    unet = build_unet(cfg, num_classes)
    scheduler = build_scheduler(cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=1e-2)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.lr_warmup_steps, total))
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = 0

    if resume:
        ckpt = latest_checkpoint(ckpt_dir)
        if ckpt is not None:
            state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
            if state.get("fingerprint") != run_fingerprint:
                logger.warning("ignoring %s: it was made with another config or data", ckpt)
            else:
                unet.load_state_dict(state["unet"])
                opt.load_state_dict(state["optimizer"])
                lr_sched.load_state_dict(state["lr_scheduler"])
                ema.load_state_dict(state["ema"])
                gen.set_state(state["generator"])
                losses = [float(v) for v in state["losses"]]
                start = int(state["step"])
                logger.info("resuming from %s (step %d of %d)", ckpt, start, total)

    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    unet, opt = acc.prepare(unet, opt)
    ema.to(acc.device)
    x_all = to_model_space(images, cfg.resolution)
    y_all = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    n_train = cfg.num_train_timesteps
    v_pred = cfg.prediction_type == "v_prediction"
    logger.info(
        "***** DDPM training: %d images at %d px, %d steps x %d, %s *****",
        len(images),
        cfg.resolution,
        total,
        cfg.batch_size,
        f"conditional ({num_classes} classes)" if num_classes else "unconditional",
    )

    def checkpoint(step: int) -> None:
        raw = acc.unwrap_model(unet)
        if ckpt_dir is not None:
            state = {
                "step": step,
                "unet": raw.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_scheduler": lr_sched.state_dict(),
                "ema": ema.state_dict(),
                "generator": gen.get_state(),
                "losses": torch.tensor(losses, dtype=torch.float64),
                "fingerprint": run_fingerprint,
            }
            with atomic_path(ckpt_dir / f"{CHECKPOINT_PREFIX}{step}", is_dir=True) as tmp:
                torch.save(state, tmp / STATE_FILE)
            for _, old in _checkpoints(ckpt_dir)[: -max(1, cfg.checkpoints_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        result.checkpoints.append(step)
        if on_checkpoint is not None:
            ema.store(raw.parameters())
            ema.copy_to(raw.parameters())
            raw.eval()
            try:
                on_checkpoint(step, raw, list(losses))
            finally:
                ema.restore(raw.parameters())
                raw.train()

    result = TrainResult(
        losses=losses, steps=start, resumed_from=start, seconds=0.0, images_per_second=0.0
    )
    unet.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, total), desc="ddpm", disable=not progress, initial=start, total=total)
    for step in bar:
        bs = cfg.batch_size
        idx = torch.randint(len(x_all), (bs,), generator=gen)
        x0 = x_all[idx]
        if cfg.hflip:
            flip = torch.rand(bs, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_train, (bs,), generator=gen)
        x0, noise, t = x0.to(acc.device), noise.to(acc.device), t.to(acc.device)
        noisy = scheduler.add_noise(x0, noise, t)
        kwargs = {"class_labels": y_all[idx].to(acc.device)} if y_all is not None else {}
        with acc.autocast():
            pred = unet(noisy, t, **kwargs).sample
        target = scheduler.get_velocity(x0, noise, t) if v_pred else noise
        loss = F.mse_loss(pred.float(), target)
        acc.backward(loss)
        acc.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        ema.step(acc.unwrap_model(unet).parameters())
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        done = step + 1
        if done == total or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            checkpoint(done)
    bar.close()
    elapsed = time.perf_counter() - t0
    result.steps = total
    result.seconds = elapsed
    result.images_per_second = (total - start) * cfg.batch_size / elapsed if elapsed > 0 else 0.0
    raw = acc.unwrap_model(unet)
    ema.copy_to(raw.parameters())
    raw.eval()
    acc.free_memory()
    return raw, scheduler, result


def save_ddpm(
    out_dir: Path | str, unet: torch.nn.Module, scheduler: Any, meta: dict[str, Any]
) -> None:
    """``save_pretrained`` the model (a DDPMPipeline when unconditional) + ``generator.json``."""
    from diffusers import DDPMPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(unet.config, "num_class_embeds", None):
        unet.save_pretrained(out / "unet")
        scheduler.save_pretrained(out / "scheduler")
    else:
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def read_meta(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro generate@<G>` first")
    return json.loads(path.read_text())


def load_ddpm(model_dir: Path | str) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load (unet, scheduler, meta) saved by :func:`save_ddpm` (either layout)."""
    from diffusers import DDPMScheduler, UNet2DModel

    model_dir = Path(model_dir)
    unet = UNet2DModel.from_pretrained(model_dir, subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    unet.eval()
    return unet, scheduler, read_meta(model_dir)
