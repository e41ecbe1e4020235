"""Samplers (DDPM-1000, DDIM, DPM-Solver++) and the batched, seeded loop of the pixel DDPMs.

:func:`make_scheduler` builds a sampler with a training schedule (text-to-image models use it
too); :func:`sample_ddpm` serves unconditional and class-conditional UNets (``DDPMPipeline``
cannot pass class labels). The same seed, count and batch size give the same images.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lusaug.core.config import SAMPLERS

logger = logging.getLogger(__name__)


# Training-schedule keys a sampler inherits. Everything else is set explicitly: diffusers'
# ``from_config`` silently drops keys listed in an in-memory config's ``_use_default_values``,
# so a scheduler built from a live config and one built from the saved JSON would differ.
_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
)
# "trailing" spacing starts few-step samplers at the last training timestep (Lin et al. 2024).
TIMESTEP_SPACING = "trailing"


def make_scheduler(sampler: str, train_config: Any) -> Any:
    """A sampling scheduler with the training DDPMScheduler's noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    base = {k: train_config[k] for k in _SCHEDULE_KEYS if k in train_config}
    base["timestep_spacing"] = TIMESTEP_SPACING
    clip = bool(train_config.get("clip_sample", True))
    if sampler == "ddpm":
        return DDPMScheduler(**base, clip_sample=clip, variance_type="fixed_small")
    if sampler == "ddim":
        return DDIMScheduler(**base, clip_sample=clip)
    if sampler == "dpmsolver++":
        return DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++")
    raise ValueError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")


@torch.no_grad()
def sample_ddpm(
    unet: torch.nn.Module,
    train_config: Any,
    n: int,
    sampler: str,
    steps: int,
    batch_size: int,
    seed: int,
    class_label: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Draw ``n`` images; returns float32 (n, r, r) in [0, 1] at the UNet's resolution.

    Args:
        unet: a trained ``UNet2DModel`` (``num_class_embeds`` set when ``class_label`` is given).
        train_config: the training scheduler's config (``scheduler.config``).
        sampler: ddpm | ddim | dpmsolver++.
        steps: denoising steps (ddpm with ``steps == num_train_timesteps`` is the full chain).
        batch_size: images per UNet call.
        seed: one generator seeded with it draws all noise, batch after batch.
        class_label: the class to sample from a class-conditional model.
    """
    if n <= 0:
        size = unet.config.sample_size
        return np.zeros((0, size, size), np.float32)
    conditional = bool(getattr(unet.config, "num_class_embeds", None))
    if conditional and class_label is None:
        raise ValueError("a class-conditional UNet needs class_label")
    sched = make_scheduler(sampler, train_config)
    gen = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    device = next(unet.parameters()).device
    out = []
    batches = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    bar = tqdm(total=len(batches) * steps, desc=f"sample {sampler}-{steps}", disable=not progress)
    for bs in batches:
        sched.set_timesteps(steps)
        x = torch.randn((bs, 1, size, size), generator=gen) * sched.init_noise_sigma
        x = x.to(device)
        kwargs = {}
        if conditional:
            kwargs["class_labels"] = torch.full((bs,), int(class_label), device=device)
        for t in sched.timesteps:
            model_in = sched.scale_model_input(x, t)
            eps = unet(model_in, t, **kwargs).sample
            x = sched.step(eps, t, x, generator=gen).prev_sample
            bar.update(1)
        out.append(((x.clamp(-1, 1) + 1) / 2).squeeze(1).float().cpu().numpy())
    bar.close()
    return np.concatenate(out)
