"""Textual inversion (the study's TI generators) on a text-to-image base: ours or a local SD.

As diffusers' ``examples/textual_inversion/textual_inversion.py``: a placeholder token (here a
multi-vector one: ``<tok>``, ``<tok>_1``, ... as ``load_textual_inversion`` names them) is added
to the tokenizer; its rows of the text encoder's token-embedding matrix start from an initializer
text's mean embedding and are the ONLY thing trained (every other row is copied back after each
step, every module is frozen); prompts come from the 'object' or 'style' templates. The rows are
saved as ``learned_embeds.safetensors`` (``{token: (num_vectors, dim)}``, a few KB).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from lusaug.core.config import TextualInversionParams
from lusaug.core.errors import LusaugError
from lusaug.core.utils import atomic_path
from lusaug.generators.captions import OBJECT_TEMPLATES, STYLE_TEMPLATES, TEMPLATES
from lusaug.generators.diffusion_loop import WEIGHT_DECAY, draw_batch
from lusaug.generators.text_to_image import TextToImage

EMBEDDINGS_FILE = "learned_embeds.safetensors"
__all__ = ["EMBEDDINGS_FILE", "OBJECT_TEMPLATES", "STYLE_TEMPLATES", "TEMPLATES"]


class TextualInversionError(LusaugError, ValueError):
    """Textual inversion cannot run as configured."""


def placeholder_tokens(token: str, num_vectors: int) -> list[str]:
    """``[token, token_1, ..., token_{n-1}]``: multi-vector names as load_textual_inversion."""
    return [token] + [f"{token}_{i}" for i in range(1, num_vectors)]


def prompt_token(token: str, num_vectors: int) -> str:
    """What the placeholder expands to inside a prompt."""
    return " ".join(placeholder_tokens(token, num_vectors))


def _embedding(t2i: TextToImage) -> torch.nn.Embedding:
    return t2i.text_encoder.get_input_embeddings()


def add_placeholder(t2i: TextToImage, token: str, num_vectors: int, initializer: str) -> list[int]:
    """Add the multi-vector token; initialise its rows with the initializer's mean embedding."""
    tok = t2i.tokenizer
    tokens = placeholder_tokens(token, num_vectors)
    if tok.add_tokens(tokens) != num_vectors:
        raise TextualInversionError(f"the tokenizer already contains {token!r}; choose another")
    ids = tok.convert_tokens_to_ids(tokens)
    init_ids = tok(initializer, add_special_tokens=False)["input_ids"]
    if not init_ids:
        raise TextualInversionError(f"initializer {initializer!r} encodes to no tokens")
    t2i.text_encoder.resize_token_embeddings(len(tok), mean_resizing=False)
    weight = _embedding(t2i).weight
    with torch.no_grad():
        init = weight[init_ids].mean(0)
        for i in ids:
            weight[i] = init
    return ids


@dataclass
class TiResult:
    embeddings: torch.Tensor  # (num_vectors, dim) learned rows
    token_ids: list[int]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return len(self.losses) / self.seconds if self.seconds > 0 else 0.0


def train_textual_inversion(
    t2i: TextToImage,
    images: np.ndarray,
    cfg: TextualInversionParams,
    template: str,
    seed: int,
    hflip: bool = True,
    train_steps: int | None = None,
    progress: bool = True,
) -> TiResult:
    """Learn the placeholder token on uint8 frames; only its embedding rows change.

    ``t2i`` is modified in place (the tokenizer gains the tokens, the text encoder the rows).
    """
    if template not in TEMPLATES:
        raise TextualInversionError(f"template must be one of {sorted(TEMPLATES)}")
    if len(images) == 0:
        raise TextualInversionError("textual inversion needs at least one training image")
    steps = cfg.train_steps if train_steps is None else train_steps
    torch.manual_seed(seed)
    rnd = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = add_placeholder(t2i, cfg.placeholder_token, cfg.num_vectors, cfg.initializer)
    for m in (t2i.unet, t2i.text_encoder, t2i.vae):
        if m is not None:
            m.requires_grad_(False)
    emb = _embedding(t2i)
    emb.weight.requires_grad_(True)
    t2i.text_encoder.train()  # as the diffusers example (dropout is 0 in CLIP)
    opt = torch.optim.AdamW([emb.weight], lr=cfg.learning_rate, weight_decay=WEIGHT_DECAY)
    orig = emb.weight.detach().clone()
    keep = torch.ones(len(t2i.tokenizer), dtype=torch.bool)
    keep[ids] = False
    pixels = t2i.pixels(images)
    placeholder = prompt_token(cfg.placeholder_token, cfg.num_vectors)
    templates = TEMPLATES[template]
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc="textual inversion", disable=not progress):
        _, x = draw_batch(pixels, cfg.batch_size, gen, hflip)
        prompts = [rnd.choice(templates).format(placeholder) for _ in range(cfg.batch_size)]
        loss = t2i.loss(t2i.encode(x, gen), prompts, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # only the new rows may move
            emb.weight[keep] = orig[keep]
        losses.append(float(loss.detach()))
    t2i.text_encoder.eval()
    emb.weight.requires_grad_(False)
    return TiResult(
        embeddings=emb.weight.detach()[ids].clone(),
        token_ids=list(ids),
        losses=losses,
        seconds=time.perf_counter() - t0,
    )


def save_embeddings(path: Path | str, token: str, embeddings: torch.Tensor) -> Path:
    """``{token: (num_vectors, dim)}`` as safetensors (what load_textual_inversion reads)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({token: embeddings.detach().cpu().contiguous()}, str(tmp))
    return path


def load_embeddings(t2i: TextToImage, path: Path | str, token: str) -> list[int]:
    """Add the learned multi-vector token of ``path`` to ``t2i`` (rows restored exactly)."""
    rows = load_file(str(path))[token]
    tokens = placeholder_tokens(token, len(rows))
    if t2i.tokenizer.add_tokens(tokens) != len(rows):
        raise TextualInversionError(f"the tokenizer already contains {token!r}")
    ids = t2i.tokenizer.convert_tokens_to_ids(tokens)
    t2i.text_encoder.resize_token_embeddings(len(t2i.tokenizer), mean_resizing=False)
    with torch.no_grad():
        _embedding(t2i).weight[ids] = rows.to(_embedding(t2i).weight.dtype)
    return list(ids)


def candidate_prompts(token: str, template: str, n: int) -> list[str]:
    """``n`` prompts cycling through the template set, with the (expanded) placeholder."""
    templates = TEMPLATES[template]
    return [templates[i % len(templates)].format(token) for i in range(n)]
