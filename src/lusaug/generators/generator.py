"""A saved generator of any kind, ready to sample uint8 frames of the rare class.

``Generator.load(models/fold-<k>/generators/<G>)`` reads ``generator.json`` to know the kind:

- ``ddpm`` / ``ddpm_conditional``: a pixel UNet2DModel (+ scheduler) in the folder (a
  conditional one samples any class: ``sample(..., label=...)``);
- ``textual_inversion``: ``learned_embeds.safetensors`` in the folder, on the base it names
  (``base`` in generator.json, or ``base_dir`` given to :meth:`Generator.load`);
- ``finetune``: a whole text-to-image pipeline in ``<folder>/pipeline``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.core.config import CONDITIONAL_KIND
from lusaug.generators.ddpm import META_FILE, load_ddpm, read_meta
from lusaug.generators.frame_io import from_unit, resize_batch
from lusaug.generators.sampling import sample_ddpm
from lusaug.generators.text_to_image import TextToImage
from lusaug.generators.textual_inversion import (
    EMBEDDINGS_FILE,
    candidate_prompts,
    load_embeddings,
    prompt_token,
)

PIPELINE_DIR = "pipeline"  # a fine-tuned generator's whole text-to-image pipeline
TEXT_KINDS = ("textual_inversion", "finetune")  # the kinds that build on a base
TRAIN_SET_FILE = "train_set.csv"  # in a generator's folder: the frames it trained on


def write_meta(model_dir: Path | str, meta: dict[str, Any]) -> None:
    """``generator.json``: what a generator is and how it samples by default."""
    text = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
    Path(model_dir, META_FILE).write_text(text)


class Generator:
    """A loaded generator; :meth:`sample` returns uint8 (n, image_size, image_size) frames."""

    def __init__(self, model_dir: Path | str, meta: dict[str, Any], model: Any, scheduler: Any):
        self.model_dir = Path(model_dir)
        self.meta = meta
        self.model = model  # a UNet2DModel, or a TextToImage for the text-conditioned kinds
        self.scheduler = scheduler

    @classmethod
    def load(cls, model_dir: Path | str, base_dir: Path | str | None = None) -> Generator:
        """Load from ``model_dir``; ``base_dir`` overrides where a TI generator's base is."""
        meta = read_meta(model_dir)
        kind = meta["kind"]
        if kind == "textual_inversion":
            t2i = TextToImage.load(base_dir or meta["base"])
            load_embeddings(t2i, Path(model_dir) / EMBEDDINGS_FILE, meta["placeholder_token"])
            return cls(model_dir, meta, t2i, None)
        if kind == "finetune":
            return cls(model_dir, meta, TextToImage.load(Path(model_dir) / PIPELINE_DIR), None)
        unet, scheduler, meta = load_ddpm(model_dir)
        return cls(model_dir, meta, unet, scheduler)

    def prompts(self, n: int, replace_token_with: str | None = None) -> list[str]:
        """The ``n`` prompts of a text-conditioned generator (templates or its captions)."""
        m = self.meta
        if m["kind"] == "textual_inversion":
            token = prompt_token(m["placeholder_token"], m["num_vectors"])
            prompts = candidate_prompts(token, m["template"], n)
            if replace_token_with is not None:
                prompts = [p.replace(token, replace_token_with) for p in prompts]
            return prompts
        captions = m["captions"]
        return [captions[i % len(captions)] for i in range(n)]

    def sample(
        self,
        n: int,
        seed: int,
        sampler: str | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        replace_token_with: str | None = None,
        label: str | None = None,
    ) -> np.ndarray:
        """``n`` uint8 frames at the pipeline's image size (defaults from generator.json);
        ``label`` picks the class of a class-conditional DDPM (default: the target class)."""
        m = self.meta
        conditional = m["kind"] == CONDITIONAL_KIND
        if label is not None and not conditional:
            raise ValueError(f"generator {m['name']!r} ({m['kind']}) samples one class only")
        class_index = m["classes"].index(label) if label is not None else m.get("class_index")
        batch_size = batch_size or m.get("batch_size") or max(n, 1)
        sampler = sampler or m["sampler"]
        steps = steps or m["steps"]
        if m["kind"] in TEXT_KINDS:
            imgs = self.model.sample(
                self.prompts(n, replace_token_with),
                seed,
                steps,
                m["guidance_scale"],
                sampler,
                batch_size,
                progress,
            )
        else:
            imgs = sample_ddpm(
                self.model,
                self.scheduler.config,
                n,
                sampler,
                steps,
                batch_size,
                seed,
                class_label=class_index if conditional else None,
                progress=progress,
            )
        return resize_batch(from_unit(imgs), int(m["image_size"]))
