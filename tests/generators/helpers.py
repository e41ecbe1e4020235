"""A tiny splits.csv + PNG fixture (4 classes, a few patients, 32 px) and a tiny SD pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lusaug.data.manifest import MANIFEST_COLUMNS

CLASSES = ["regular", "covid", "pneumonia", "viral"]


def synth_frame(
    label: str, patient: int, idx: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """A crude ultrasound-like frame: speckle, a pleural line and class-specific lines/blobs."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = 40 + 30 * (1 - y) + rng.normal(0, 18, (size, size))
    pleura = 0.25 + 0.05 * (patient % 3) + 0.01 * np.sin(idx)
    img = base + 120 * np.exp(-((y - pleura) ** 2) / 0.001)
    if label == "regular":
        for k in (2, 3):
            img += 60 * np.exp(-((y - k * pleura) ** 2) / 0.001)
    elif label in ("covid", "viral"):
        n = 2 if label == "covid" else 4
        for k in range(n):
            cx = 0.2 + 0.6 * k / max(1, n - 1) + 0.02 * np.sin(idx + patient)
            amp = 90 if label == "covid" else 60
            img += amp * np.exp(-((x - cx) ** 2) / 0.002) * (y > pleura)
    else:
        img += 80 * np.exp(-(((x - 0.5) ** 2) + (y - 0.6) ** 2) / 0.02)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_frames_fixture(
    root: Path,
    size: int = 32,
    patients: dict[str, int] | None = None,
    frames_per_patient: int = 4,
    seed: int = 0,
    validation_success: bool = True,
) -> tuple[Path, Path]:
    """Write root/data/frames/<label>/*.png, root/data/splits.csv and a validation.json.

    Per class the patients go train, train, ..., then val, then test (last two), so every
    class is in every split. Returns (splits_csv, validation_json).
    """
    patients = patients or {"regular": 4, "covid": 4, "pneumonia": 4, "viral": 5}
    rng = np.random.default_rng(seed)
    data = root / "data"
    rows = []
    for label, n_pat in patients.items():
        (data / "frames" / label).mkdir(parents=True, exist_ok=True)
        for p in range(n_pat):
            split = "test" if p == n_pat - 1 else "val" if p == n_pat - 2 else "train"
            pid = f"{label}_p{p}"
            for i in range(frames_per_patient):
                rel = f"frames/{label}/{pid}_v0_{i:05d}.png"
                img = synth_frame(label, p, i, size, rng)
                cv2.imwrite(str(data / rel), img)
                rows.append(
                    {
                        "path": rel,
                        "label": label,
                        "video_id": f"{pid}_v0",
                        "patient_id": pid,
                        "probe": "convex",
                        "source": "fixture",
                        "license": "CC0",
                        "width": size,
                        "height": size,
                        "sha1": f"{label}{p}{i}",
                        "split": split,
                    }
                )
    df = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "split"])
    splits_csv = data / "splits.csv"
    df.to_csv(splits_csv, index=False)
    val = root / "metrics" / "validation.json"
    val.parent.mkdir(parents=True, exist_ok=True)
    val.write_text(json.dumps({"success": validation_success}))
    return splits_csv, val


def byte_level_vocab() -> dict[str, int]:
    """The CLIP byte-level vocab without merges: special tokens + 256 chars (+ </w> forms)."""
    # GPT-2/CLIP byte -> printable-unicode table (bytes_to_unicode)
    bs = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    chars = [chr(c) for c in cs]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    return vocab


def build_tiny_sd(folder: Path) -> Path:
    """A tiny Stable Diffusion from configs, saved with save_pretrained."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77)
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    sched = DDPMScheduler(num_train_timesteps=1000, steps_offset=1, clip_sample=False)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder
