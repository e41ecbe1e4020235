"""Text-to-image diffusion: the pipeline's own pixel-space base, or a local Stable Diffusion.

:class:`LusTextToImagePipeline` is a diffusers ``DiffusionPipeline`` (UNet2DConditionModel on
grey 1-channel pixels, a CLIPTextModel built from config, a word-level tokenizer built locally,
a DDPMScheduler): ``save_pretrained`` writes a normal pipeline folder and
``LusTextToImagePipeline.from_pretrained`` loads it. Pixel space at 64 px follows Imagen's and
DeepFloyd IF's base stages: an autoencoder trained for minutes on CPU loses the pleural line and
the speckle (science.md section 9), so there is no latent space here.

:class:`TextToImage` puts that pipeline and a Stable Diffusion checkpoint (latent, RGB) behind
one interface: images to model space, prompts to text states, a text-conditioned loss, and
classifier-free-guided sampling with DPM-Solver++ (or DDIM / DDPM). Textual inversion and
fine-tuning are written against it, so ``generate.base: /path/to/sd`` swaps the base.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from tqdm.auto import tqdm

from lusaug.core.config import BaseModelParams
from lusaug.core.errors import LusaugError
from lusaug.generators.captions import SPECIALS, training_caption
from lusaug.generators.diffusion_loop import draw_batch, noisy_batch
from lusaug.generators.frame_io import resize_batch
from lusaug.generators.sampling import make_scheduler

FFN_RATIO = 4  # transformer feed-forward width / hidden width (CLIP's ratio)
PIPELINE_CLASS = "LusTextToImagePipeline"


class BaseModelError(LusaugError, ValueError):
    """The base model folder is missing or is not a text-to-image pipeline."""


class LusTextToImagePipeline(DiffusionPipeline):
    """Grey pixel-space text-to-image pipeline (unet, text_encoder, tokenizer, scheduler)."""

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, scheduler: Any):
        super().__init__()
        self.register_modules(
            unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        seed: int = 0,
        sampler: str = "dpmsolver++",
    ) -> np.ndarray:
        """Grey images (n, r, r) in [0, 1]; image i starts from the noise of ``seed + i``."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return TextToImage.from_pipeline(self).sample(
            prompts, seed, num_inference_steps, guidance_scale, sampler
        )


def build_base(cfg: BaseModelParams, tokenizer: Any) -> LusTextToImagePipeline:
    """A fresh base pipeline from config (cross-attention at the lowest-resolution levels)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    levels = len(cfg.block_out_channels)
    if cfg.resolution % 2 ** (levels - 1):
        raise BaseModelError(
            f"base_model.resolution {cfg.resolution} must be divisible by 2**(levels-1)"
        )
    ids = tokenizer.convert_tokens_to_ids([SPECIALS["bos"], SPECIALS["eos"], SPECIALS["pad"]])
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden_size,
            intermediate_size=FFN_RATIO * cfg.text_hidden_size,
            num_attention_heads=cfg.text_heads,
            num_hidden_layers=cfg.text_layers,
            max_position_embeddings=cfg.max_caption_tokens,
            bos_token_id=ids[0],
            eos_token_id=ids[1],
            pad_token_id=ids[2],
        )
    )
    plain = levels - cfg.cross_attention_levels
    down = ["DownBlock2D"] * plain + ["CrossAttnDownBlock2D"] * cfg.cross_attention_levels
    up = ["CrossAttnUpBlock2D" if "CrossAttn" in b else "UpBlock2D" for b in reversed(down)]
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution,
        in_channels=1,
        out_channels=1,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        cross_attention_dim=cfg.text_hidden_size,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
    )
    return LusTextToImagePipeline(unet, text_encoder, tokenizer, scheduler)


def pipeline_class(folder: Path | str) -> str:
    """``_class_name`` of a saved diffusers pipeline folder (clear error when there is none)."""
    index = Path(folder) / "model_index.json"
    if not index.exists():
        raise BaseModelError(
            f"{folder} is not a diffusers pipeline folder (no model_index.json): run "
            "`dvc repro base_model@<fold>` or set generate.base to a local Stable Diffusion folder"
        )
    return json.loads(index.read_text()).get("_class_name", "")


def resolve_base(base_dir: Path | str, external: str) -> Path:
    """The pipeline folder generators build on: ``generate.base`` when set, else ``base_dir``."""
    path = Path(external).expanduser() if external else Path(base_dir)
    pipeline_class(path)  # a clear error when it is not a pipeline folder
    return path


def load_pipeline(folder: Path | str) -> Any:
    """The pipeline in ``folder``: ours or a local Stable Diffusion (no safety checker, no hub)."""
    if pipeline_class(folder) == PIPELINE_CLASS:
        pipe = LusTextToImagePipeline.from_pretrained(str(folder), local_files_only=True)
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder),
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=True,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class TextToImage:
    """The parts every text-conditioned generator uses, for a pixel or a latent pipeline."""

    pipe: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    vae: Any | None  # None = pixel space (our base)

    @classmethod
    def from_pipeline(cls, pipe: Any) -> TextToImage:
        return cls(
            pipe,
            pipe.unet,
            pipe.text_encoder,
            pipe.tokenizer,
            pipe.scheduler,
            getattr(pipe, "vae", None),
        )

    @classmethod
    def load(cls, folder: Path | str) -> TextToImage:
        return cls.from_pipeline(load_pipeline(folder))

    @property
    def latent(self) -> bool:
        return self.vae is not None

    @property
    def scale(self) -> int:
        """Pixels per model-space pixel (SD's VAE factor; 1 in pixel space)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        """Image side in pixels."""
        return int(self.unet.config.sample_size) * self.scale

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W) -> (N, C, r, r) in [-1, 1]; C = 3 for Stable Diffusion (RGB)."""
        x = resize_batch(images, self.resolution).astype(np.float32) / 127.5 - 1.0
        x = torch.from_numpy(x).unsqueeze(1)
        return x.repeat(1, 3, 1, 1) if self.latent else x

    def encode(self, pixels: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Model-space tensors of pixels: SD latents (sampled), or the pixels themselves."""
        if self.vae is None:
            return pixels
        with torch.no_grad():
            dist = self.vae.encode(pixels).latent_dist
            return dist.sample(generator=gen) * self.vae.config.scaling_factor

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """Model space -> grey float32 (N, r, r) in [0, 1]."""
        if self.vae is not None:
            x = self.vae.decode(x / self.vae.config.scaling_factor).sample
        return ((x.clamp(-1, 1) + 1) / 2).mean(dim=1).float().cpu().numpy()

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        return tok(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=tok.model_max_length,
            return_tensors="pt",
        ).input_ids

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder states (B, L, D) that the UNet cross-attends to."""
        return self.text_encoder(self.token_ids(prompts))[0]

    def loss(
        self,
        x0: torch.Tensor,
        prompts: list[str],
        gen: torch.Generator,
    ) -> torch.Tensor:
        """Denoising MSE of one batch of model-space images with their prompts."""
        noisy, t, target = noisy_batch(self.scheduler, x0, gen)
        pred = self.unet(noisy, t, encoder_hidden_states=self.embed(prompts)).sample
        return F.mse_loss(pred.float(), target.float())

    @torch.no_grad()
    def sample(
        self,
        prompts: list[str],
        seed: int,
        steps: int,
        guidance_scale: float,
        sampler: str = "dpmsolver++",
        batch_size: int = 16,
        progress: bool = False,
    ) -> np.ndarray:
        """One grey image per prompt, float32 (n, r, r) in [0, 1], classifier-free guided.

        Image i starts from the noise of ``seed + i``, so the same seed gives the same start
        whatever the prompt (the with/without-token grid relies on it).
        """
        self.unet.eval()
        self.text_encoder.eval()
        sched = make_scheduler(sampler, self.scheduler.config)
        size = int(self.unet.config.sample_size)
        channels = int(self.unet.config.in_channels)
        guided = guidance_scale != 1.0
        out = []
        bar = tqdm(total=len(prompts), desc=f"sample {sampler}-{steps}", disable=not progress)
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            noise = [
                torch.randn(
                    (1, channels, size, size), generator=torch.Generator().manual_seed(seed + i)
                )
                for i in range(start, start + len(chunk))
            ]
            sched.set_timesteps(steps)
            x = torch.cat(noise) * sched.init_noise_sigma
            cond = self.embed(chunk)
            if guided:
                cond = torch.cat([self.embed([""] * len(chunk)), cond])
            step_gen = torch.Generator().manual_seed(seed + start)
            for t in sched.timesteps:
                inp = sched.scale_model_input(torch.cat([x, x]) if guided else x, t)
                pred = self.unet(inp, t, encoder_hidden_states=cond).sample
                if guided:
                    uncond, text = pred.chunk(2)
                    pred = uncond + guidance_scale * (text - uncond)
                x = sched.step(pred, t, x, generator=step_gen).prev_sample
            out.append(self.decode(x))
            bar.update(len(chunk))
        bar.close()
        if not out:
            return np.zeros((0, self.resolution, self.resolution), np.float32)
        return np.concatenate(out)


def caption_loss_fn(
    t2i: TextToImage,
    images: np.ndarray,
    texts: list[str],
    batch_size: int,
    hflip: bool,
    template_prob: float,
    caption_dropout: float,
):
    """``loss_fn(generator)`` for train_loop: frames with their captions (templated, dropped)."""
    pixels = t2i.pixels(images)
    static = None if t2i.latent else pixels  # pixel space: nothing to encode per step

    def loss_fn(gen: torch.Generator) -> torch.Tensor:
        idx, x = draw_batch(pixels if static is None else static, batch_size, gen, hflip)
        x0 = x if static is not None else t2i.encode(x, gen)
        rnd = random.Random(int(torch.randint(2**31 - 1, (1,), generator=gen)))
        prompts = [
            training_caption(texts[int(i)], rnd, template_prob, caption_dropout) for i in idx
        ]
        return t2i.loss(x0, prompts, gen)

    return loss_fn
