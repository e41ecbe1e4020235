"""Grey-scale pixel DDPMs with diffusers: UNet2DModel + DDPMScheduler (the study's generators).

Training runs in :func:`lusaug.generators.diffusion_loop.train_loop` (EMA, resumable pruned
checkpoints). Unconditional models are saved as a ``DDPMPipeline`` (``DDPMPipeline.from_pretrained``
loads them); class-conditional ones (``num_class_embeds``) as ``unet/`` + ``scheduler/``
folders, since ``DDPMPipeline`` cannot pass class labels (sampling.py has the loop that can).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lusaug.core.config import DdpmParams
from lusaug.generators.diffusion_loop import (
    Checkpointing,
    TrainResult,
    draw_batch,
    fingerprint,
    latest_checkpoint,
    noisy_batch,
    settings_of,
    train_loop,
)
from lusaug.generators.frame_io import resize_batch

logger = logging.getLogger(__name__)

META_FILE = "generator.json"
__all__ = ["TrainResult", "fingerprint", "latest_checkpoint", "train_ddpm"]

# Called with (step, unet holding the EMA weights, losses so far) at every checkpoint.
CheckpointHook = Callable[[int, torch.nn.Module, list[float]], None]


def build_unet(cfg: DdpmParams, num_classes: int | None = None) -> torch.nn.Module:
    """A 1-channel ``UNet2DModel`` with one level per width; attention at the lowest level."""
    from diffusers import UNet2DModel

    levels = len(cfg.block_out_channels)
    if cfg.resolution % 2 ** (levels - 1):
        raise ValueError(
            f"generate.ddpm.resolution {cfg.resolution} must be divisible by 2**(levels-1) "
            f"for {levels} levels of block_out_channels"
        )
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
    small = resize_batch(images, resolution).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(small).unsqueeze(1)


def train_ddpm(
    images: np.ndarray,
    cfg: DdpmParams,
    seed: int,
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
    checkpoints: Checkpointing | None = None,
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
        num_classes: classes of a class-conditional model.
        checkpoints: where checkpoints go and whether to resume (None = no checkpoints).
        on_checkpoint: hook for sample grids / logging at each checkpoint (EMA weights loaded).
        progress: show a progress bar.
        train_steps: override ``cfg.train_steps`` (3mixed sets, benchmarks, tests).
    """
    if len(images) == 0:
        raise ValueError("train_ddpm needs at least one training image")
    if (labels is None) != (num_classes is None):
        raise ValueError("pass labels and num_classes together for a conditional DDPM")
    torch.manual_seed(seed)
    unet = build_unet(cfg, num_classes)
    scheduler = build_scheduler(cfg)
    x_all = to_model_space(images, cfg.resolution)
    y_all = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None

    def loss_fn(gen: torch.Generator) -> torch.Tensor:
        idx, x0 = draw_batch(x_all, cfg.batch_size, gen, cfg.hflip)
        noisy, t, target = noisy_batch(scheduler, x0, gen)
        kwargs = {"class_labels": y_all[idx]} if y_all is not None else {}
        return F.mse_loss(unet(noisy, t, **kwargs).sample.float(), target)

    hook = None
    if on_checkpoint is not None:

        def hook(step: int, losses: list[float]) -> None:
            on_checkpoint(step, unet, losses)

    result = train_loop(
        {"unet": unet},
        loss_fn,
        settings_of(cfg, train_steps),
        seed,
        checkpoints,
        on_checkpoint=hook,
        progress=progress,
        desc="ddpm",
    )
    return unet, scheduler, result


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
