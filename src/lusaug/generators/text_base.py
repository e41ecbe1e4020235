"""Train the text-conditioned base on the OTHER classes' frames, and fine-tune a base's UNet.

The base stands in for Stable Diffusion where none can be had: it learns lung ultrasound from
the classes that are not rare, with captions from the metadata, and never sees a rare-class frame
or the rare class's word (:func:`base_training_data` refuses them; tests assert it). Captions are
dropped to "" with probability ``caption_dropout`` so classifier-free guidance works, and some are
wrapped in the textual-inversion templates so those words are familiar context.

Fine-tuning (in the spirit of Freiche et al. 2025) trains every UNet weight of a base on the rare
class with its caption; the text encoder stays frozen, so the prompt space is the base's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from lusaug.core.config import BaseModelParams, FinetuneParams
from lusaug.generators.captions import (
    build_tokenizer,
    build_vocab,
    captions,
    check_no_class,
)
from lusaug.generators.diffusion_loop import Checkpointing, TrainResult, settings_of, train_loop
from lusaug.generators.text_to_image import TextToImage, build_base, caption_loss_fn

logger = logging.getLogger(__name__)

CAPTIONS_FILE = "train_captions.csv"  # what the base was given: one row per training frame


@dataclass
class BaseData:
    """The frames and captions a base trains on (and the vocabulary they make)."""

    rows: pd.DataFrame  # manifest rows (train split, other classes)
    texts: list[str]  # one caption per row
    vocab: dict[str, int]


def base_training_data(splits: pd.DataFrame, target_class: str, classes: list[str]) -> BaseData:
    """Training-split rows of every class but ``target_class``, their captions and vocabulary."""
    others = [c for c in classes if c != target_class]
    rows = splits[(splits["split"] == "train") & splits["label"].isin(others)]
    rows = rows.sort_values("path").reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no training frames of the classes other than {target_class!r}")
    texts = captions(rows)
    check_no_class(texts, rows, target_class)
    return BaseData(rows=rows, texts=texts, vocab=build_vocab(texts, forbidden=[target_class]))


def train_base(
    images: np.ndarray,
    data: BaseData,
    cfg: BaseModelParams,
    seed: int,
    checkpoints: Checkpointing | None = None,
    on_checkpoint: Any = None,
    progress: bool = True,
) -> tuple[TextToImage, TrainResult]:
    """Train a fresh base pipeline on uint8 frames with their captions (UNet + text encoder).

    Args:
        images: uint8 (N, H, W) frames, one per row of ``data``.
        data: rows, captions and vocabulary from :func:`base_training_data`.
        cfg: the ``base_model`` section.
        seed: seeds weights, batches, captions, noise and timesteps.
        checkpoints: where checkpoints go and whether to resume (None = no checkpoints).
        on_checkpoint: ``hook(step, t2i, losses)`` at each checkpoint (EMA weights loaded).
        progress: show a progress bar.
    """
    if len(images) != len(data.texts):
        raise ValueError(f"{len(images)} frames but {len(data.texts)} captions")
    torch.manual_seed(seed)
    t2i = TextToImage.from_pipeline(
        build_base(cfg, build_tokenizer(data.vocab, cfg.max_caption_tokens))
    )
    loss_fn = caption_loss_fn(
        t2i,
        images,
        data.texts,
        cfg.batch_size,
        cfg.hflip,
        cfg.template_prob,
        cfg.caption_dropout,
    )
    hook = None if on_checkpoint is None else (lambda s, losses: on_checkpoint(s, t2i, losses))
    result = train_loop(
        {"unet": t2i.unet, "text_encoder": t2i.text_encoder},
        loss_fn,
        settings_of(cfg),
        seed,
        checkpoints,
        on_checkpoint=hook,
        progress=progress,
        desc="base model",
    )
    return t2i, result


def finetune_unet(
    t2i: TextToImage,
    images: np.ndarray,
    texts: list[str],
    cfg: FinetuneParams,
    seed: int,
    hflip: bool,
    checkpoints: Checkpointing | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune ``t2i``'s UNet in place on frames with their captions; text encoder frozen."""
    if len(images) == 0:
        raise ValueError("fine-tuning needs at least one training frame")
    t2i.text_encoder.requires_grad_(False)
    if t2i.vae is not None:
        t2i.vae.requires_grad_(False)
    t2i.unet.requires_grad_(True)
    loss_fn = caption_loss_fn(t2i, images, texts, cfg.batch_size, hflip, 0.0, cfg.caption_dropout)
    result = train_loop(
        {"unet": t2i.unet},
        loss_fn,
        settings_of(
            cfg,
            mixed_precision="no",
            checkpoint_every=0,
            checkpoints_total_limit=1,
        ),
        seed,
        checkpoints,
        progress=progress,
        desc="fine-tune",
    )
    t2i.text_encoder.eval()
    return result
