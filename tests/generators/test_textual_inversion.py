"""Textual inversion on a tiny Stable Diffusion built from configs (no hub, no download)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lusaug.generators import textual_inversion as ti

torch.set_num_threads(1)


@pytest.fixture()
def ti_cfg(micro_params):
    return dataclasses.replace(
        micro_params.generate.ti,
        num_vectors=3,
        resolution=32,
        train_steps=1,
        batch_size=2,
        learning_rate=0.05,
        inference_steps=2,
        guidance_scale=1.0,
        initializer="lung",
    )


def snapshot(pipe) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("text_encoder", "unet", "vae"):
        for k, v in getattr(pipe, name).state_dict().items():
            out[f"{name}.{k}"] = v.detach().clone()
    return out


def test_one_step_changes_only_the_new_token_rows(tiny_sd_dir, viral_frames, ti_cfg):
    pipe = ti.load_sd_pipeline(tiny_sd_dir)
    before_vocab = len(pipe.tokenizer)
    res = ti.train_textual_inversion(pipe, viral_frames, ti_cfg, "object", seed=0, progress=False)
    # compare against a fresh copy with the same tokens added and initialised
    ref = ti.load_sd_pipeline(tiny_sd_dir)
    ids = ti.add_placeholder(ref, ti_cfg.placeholder_token, ti_cfg.num_vectors, ti_cfg.initializer)
    assert ids == res.token_ids and len(pipe.tokenizer) == before_vocab + 3
    after, init = snapshot(pipe), snapshot(ref)
    te = pipe.text_encoder
    (emb_name,) = [n for n, w in te.named_parameters() if w is te.get_input_embeddings().weight]
    emb_key = f"text_encoder.{emb_name}"
    for k in init:
        if k != emb_key:
            assert torch.equal(after[k], init[k]), f"{k} changed"
    other = torch.ones(len(pipe.tokenizer), dtype=torch.bool)
    other[ids] = False
    assert torch.equal(after[emb_key][other], init[emb_key][other])  # bit-identical
    assert not torch.equal(after[emb_key][ids], init[emb_key][ids])  # the new rows moved
    assert (after[emb_key][ids] != init[emb_key][ids]).any(dim=1).all()  # every vector did
    assert len(res.losses) == 1 and np.isfinite(res.losses[0])


def test_save_load_round_trip_restores_the_rows_exactly(
    tiny_sd_dir, viral_frames, ti_cfg, tmp_path
):
    pipe = ti.load_sd_pipeline(tiny_sd_dir)
    res = ti.train_textual_inversion(pipe, viral_frames, ti_cfg, "style", seed=1, progress=False)
    path = ti.save_embeddings(
        tmp_path / ti.EMBEDDINGS_FILE, ti_cfg.placeholder_token, res.embeddings
    )
    assert path.stat().st_size < 1024 * 1024
    loaded = ti.load_ti_pipeline(tiny_sd_dir, path, ti_cfg.placeholder_token)
    tokens = ti.placeholder_tokens(ti_cfg.placeholder_token, ti_cfg.num_vectors)
    ids = loaded.tokenizer.convert_tokens_to_ids(tokens)
    rows = loaded.text_encoder.get_input_embeddings().weight[ids]
    assert torch.equal(rows, res.embeddings)
    # the pipeline expands the placeholder into all its vectors in prompts
    prompt = loaded.maybe_convert_prompt(
        f"a photo of a {ti_cfg.placeholder_token}", loaded.tokenizer
    )
    assert all(t in prompt for t in tokens)


def test_generation_returns_images_of_the_requested_size(tiny_sd_dir, ti_cfg, tmp_path):
    pipe = ti.load_sd_pipeline(tiny_sd_dir)
    res = ti.train_textual_inversion(
        pipe, np.zeros((1, 32, 32), np.uint8), ti_cfg, "object", seed=0, progress=False
    )
    path = ti.save_embeddings(tmp_path / "e.safetensors", ti_cfg.placeholder_token, res.embeddings)
    loaded = ti.load_ti_pipeline(tiny_sd_dir, path, ti_cfg.placeholder_token)
    imgs = ti.generate_ti(
        loaded,
        ti_cfg.placeholder_token,
        "object",
        n=3,
        seed=0,
        resolution=32,
        steps=2,
        guidance_scale=1.0,
        batch_size=2,
    )
    assert imgs.shape == (3, 32, 32) and imgs.dtype == np.float32
    assert 0.0 <= imgs.min() and imgs.max() <= 1.0
    plain = ti.generate_ti(
        loaded,
        ti_cfg.placeholder_token,
        "object",
        n=3,
        seed=0,
        resolution=32,
        steps=2,
        guidance_scale=1.0,
        batch_size=2,
        replace_token_with="lung ultrasound",
    )
    assert not np.array_equal(imgs, plain)  # the token changes the conditioning


def test_missing_checkpoint_says_how_to_enable_ti(tmp_path):
    with pytest.raises(ti.TextualInversionError, match="generate.ti.checkpoint"):
        ti.require_checkpoint("", "ti_object")
    with pytest.raises(ti.TextualInversionError, match="not a diffusers checkpoint"):
        ti.require_checkpoint(str(tmp_path), "ti_object")


def test_prompts_use_the_templates():
    prompts = ti.candidate_prompts("<t>", "style", 3)
    assert prompts[0] == ti.STYLE_TEMPLATES[0].format("<t>")
    assert all("<t>" in p for p in prompts)
    assert ti.prompt_token("<t>", 3) == "<t> <t>_1 <t>_2"
