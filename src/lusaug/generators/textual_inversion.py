"""Textual inversion on a local Stable Diffusion checkpoint (the study's TI generators).

As diffusers' ``examples/textual_inversion/textual_inversion.py``: a placeholder token (here a
multi-vector one: ``<tok>``, ``<tok>_1``, ... as ``load_textual_inversion`` expects) is added to
the tokenizer, its rows of the text encoder's token-embedding matrix are initialised from an
initializer text and are the ONLY thing trained (every other row is copied back after each step,
every other module is frozen); prompts come from the 'object' or 'style' templates. Grey frames
are repeated to 3 channels. The learned rows are saved as ``learned_embeds.safetensors``
(``{token: (num_vectors, dim)}``, a few KB) and loaded with ``pipe.load_textual_inversion``.

Nothing is downloaded: the checkpoint is a local diffusers folder given by a param.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lusaug.config import TextualInversionParams
from lusaug.errors import LusaugError

logger = logging.getLogger(__name__)

EMBEDDINGS_FILE = "learned_embeds.safetensors"

# diffusers examples/textual_inversion: imagenet_templates_small / imagenet_style_templates_small.
OBJECT_TEMPLATES = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
]
STYLE_TEMPLATES = [
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
]
TEMPLATES = {"object": OBJECT_TEMPLATES, "style": STYLE_TEMPLATES}


class TextualInversionError(LusaugError, ValueError):
    """Textual inversion cannot run as configured (e.g. no local checkpoint)."""


def require_checkpoint(checkpoint: str, generator: str) -> Path:
    """The local SD folder, or a message that says how to enable TI generators."""
    how = (
        f"generator {generator!r} is textual inversion and needs a LOCAL Stable Diffusion "
        "checkpoint in diffusers format (model_index.json, unet/, vae/, text_encoder/, "
        "tokenizer/, scheduler/). Set generate.ti.checkpoint to that folder, e.g. "
        "`dvc exp run -S generate.ti.checkpoint=/data/sd-v1-5 "
        "-S 'generate.enabled=[ddpm_3mixed,ddpm_all,ti_object,ti_style]'`; nothing is downloaded"
    )
    if not checkpoint:
        raise TextualInversionError(f"generate.ti.checkpoint is empty: {how}")
    path = Path(checkpoint).expanduser()
    if not (path / "model_index.json").exists():
        raise TextualInversionError(f"{path} is not a diffusers checkpoint folder: {how}")
    return path


def placeholder_tokens(token: str, num_vectors: int) -> list[str]:
    """``[token, token_1, ..., token_{n-1}]``: multi-vector names as load_textual_inversion."""
    return [token] + [f"{token}_{i}" for i in range(1, num_vectors)]


def prompt_token(token: str, num_vectors: int) -> str:
    """What the placeholder expands to inside a training prompt."""
    return " ".join(placeholder_tokens(token, num_vectors))


def load_sd_pipeline(checkpoint: Path | str) -> Any:
    """A local StableDiffusionPipeline (no safety checker, no hub)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(checkpoint), safety_checker=None, requires_safety_checker=False, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def add_placeholder(pipe: Any, token: str, num_vectors: int, initializer: str) -> list[int]:
    """Add the multi-vector token; initialise its rows with the initializer's mean embedding."""
    tok, te = pipe.tokenizer, pipe.text_encoder
    tokens = placeholder_tokens(token, num_vectors)
    added = tok.add_tokens(tokens)
    if added != num_vectors:
        raise TextualInversionError(f"the tokenizer already contains {token!r}; choose another")
    ids = tok.convert_tokens_to_ids(tokens)
    init_ids = tok(initializer, add_special_tokens=False)["input_ids"]
    if not init_ids:
        raise TextualInversionError(f"initializer {initializer!r} encodes to no tokens")
    te.resize_token_embeddings(len(tok), mean_resizing=False)
    weight = te.get_input_embeddings().weight
    with torch.no_grad():
        init = weight[init_ids].mean(0)
        for i in ids:
            weight[i] = init
    return ids


def to_pixel_space(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (N, H, W) grey -> (N, 3, r, r) in [-1, 1] (SD expects RGB)."""
    from lusaug.generators.data import resize_batch

    x = resize_batch(images, resolution).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(x).unsqueeze(1).repeat(1, 3, 1, 1)


@dataclass
class TiResult:
    embeddings: torch.Tensor  # (num_vectors, dim) learned rows
    token_ids: list[int]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_textual_inversion(
    pipe: Any,
    images: np.ndarray,
    cfg: TextualInversionParams,
    template: str,
    seed: int,
    train_steps: int | None = None,
    progress: bool = True,
) -> TiResult:
    """Learn the placeholder token on uint8 frames; only its embedding rows change.

    ``pipe`` is modified in place (tokenizer gains the tokens; text encoder the learned rows).
    """
    from diffusers import DDPMScheduler

    if template not in TEMPLATES:
        raise TextualInversionError(f"template must be one of {sorted(TEMPLATES)}")
    if len(images) == 0:
        raise TextualInversionError("textual inversion needs at least one training image")
    steps = cfg.train_steps if train_steps is None else train_steps
    torch.manual_seed(seed)
    rnd = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = add_placeholder(pipe, cfg.placeholder_token, cfg.num_vectors, cfg.initializer)
    tok, te, vae, unet = pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.unet
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    te.requires_grad_(False)
    emb = te.get_input_embeddings()
    emb.weight.requires_grad_(True)
    te.train()
    opt = torch.optim.AdamW([emb.weight], lr=cfg.learning_rate, weight_decay=1e-2)
    orig = emb.weight.detach().clone()
    keep = torch.ones(len(tok), dtype=torch.bool)
    keep[ids] = False
    pixels = to_pixel_space(images, cfg.resolution)
    placeholder = prompt_token(cfg.placeholder_token, cfg.num_vectors)
    templates = TEMPLATES[template]
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc="textual inversion", disable=not progress):
        idx = torch.randint(len(pixels), (cfg.batch_size,), generator=gen)
        prompts = [rnd.choice(templates).format(placeholder) for _ in range(cfg.batch_size)]
        input_ids = tok(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=tok.model_max_length,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            latents = vae.encode(pixels[idx]).latent_dist.sample(generator=gen)
            latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen)
        noisy = noise_sched.add_noise(latents, noise, t)
        hidden = te(input_ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=hidden).sample
        if noise_sched.config.prediction_type == "v_prediction":
            target = noise_sched.get_velocity(latents, noise, t)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # only the new rows may move
            emb.weight[keep] = orig[keep]
        losses.append(float(loss.detach()))
    te.eval()
    emb.weight.requires_grad_(False)
    learned = emb.weight.detach()[ids].clone()
    return TiResult(
        embeddings=learned, token_ids=list(ids), losses=losses, seconds=time.perf_counter() - t0
    )


def save_embeddings(path: Path | str, token: str, embeddings: torch.Tensor) -> Path:
    """``{token: (num_vectors, dim)}`` as safetensors (what load_textual_inversion reads)."""
    from safetensors.torch import save_file

    from lusaug.utils import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({token: embeddings.detach().cpu().contiguous()}, str(tmp))
    return path


def load_ti_pipeline(checkpoint: Path | str, embeddings: Path | str, token: str) -> Any:
    """The local SD pipeline with the learned token loaded (``load_textual_inversion``)."""
    pipe = load_sd_pipeline(checkpoint)
    pipe.load_textual_inversion(str(embeddings), token=token)
    return pipe


def candidate_prompts(token: str, template: str, n: int) -> list[str]:
    """``n`` prompts cycling through the template set, with the placeholder token."""
    templates = TEMPLATES[template]
    return [templates[i % len(templates)].format(token) for i in range(n)]


@torch.no_grad()
def generate_ti(
    pipe: Any,
    token: str,
    template: str,
    n: int,
    seed: int,
    resolution: int,
    steps: int,
    guidance_scale: float,
    batch_size: int,
    replace_token_with: str | None = None,
) -> np.ndarray:
    """``n`` grey images (float32 (n, r, r) in [0, 1]); image i uses seed ``seed + i``.

    ``replace_token_with`` swaps the token for plain text (the without-token comparison).
    """
    prompts = candidate_prompts(token, template, n)
    if replace_token_with is not None:
        prompts = [p.replace(token, replace_token_with) for p in prompts]
    out = []
    for i in range(0, n, batch_size):
        chunk = prompts[i : i + batch_size]
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(chunk))]
        res = pipe(
            chunk,
            height=resolution,
            width=resolution,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=gens,
            output_type="np",
        )
        out.append(np.asarray(res.images, np.float32).mean(axis=-1))
    if not out:
        return np.zeros((0, resolution, resolution), np.float32)
    return np.clip(np.concatenate(out), 0.0, 1.0)
