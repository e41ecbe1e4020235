"""Textual inversion on our base and on a tiny Stable Diffusion (a user-supplied checkpoint)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lusaug.generators import textual_inversion as ti
from lusaug.generators.text_to_image import BaseModelError, TextToImage

torch.set_num_threads(1)


@pytest.fixture()
def ti_cfg(micro_params):
    return dataclasses.replace(
        micro_params.generate.ti,
        num_vectors=3,
        train_steps=1,
        batch_size=2,
        learning_rate=0.05,
        initializer="lung",
    )


@pytest.fixture(params=["own_base", "tiny_sd"])
def base_dir(request, tiny_base_dir, tiny_sd_dir):
    return tiny_base_dir if request.param == "own_base" else tiny_sd_dir


def snapshot(t2i) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("text_encoder", "unet", "vae"):
        module = getattr(t2i, name)
        if module is not None:
            for k, v in module.state_dict().items():
                out[f"{name}.{k}"] = v.detach().clone()
    return out


def test_one_step_changes_only_the_new_token_rows(base_dir, viral_frames, ti_cfg):
    t2i = TextToImage.load(base_dir)
    before_vocab = len(t2i.tokenizer)
    res = ti.train_textual_inversion(t2i, viral_frames, ti_cfg, "object", seed=0, progress=False)
    # compare against a fresh copy with the same tokens added and initialised
    ref = TextToImage.load(base_dir)
    ids = ti.add_placeholder(ref, ti_cfg.placeholder_token, ti_cfg.num_vectors, ti_cfg.initializer)
    assert ids == res.token_ids and len(t2i.tokenizer) == before_vocab + 3
    after, init = snapshot(t2i), snapshot(ref)
    te = t2i.text_encoder
    (emb_name,) = [n for n, w in te.named_parameters() if w is te.get_input_embeddings().weight]
    emb_key = f"text_encoder.{emb_name}"
    for k in init:
        if k != emb_key:
            assert torch.equal(after[k], init[k]), f"{k} changed"
    other = torch.ones(len(t2i.tokenizer), dtype=torch.bool)
    other[ids] = False
    assert torch.equal(after[emb_key][other], init[emb_key][other])  # bit-identical
    assert (after[emb_key][ids] != init[emb_key][ids]).any(dim=1).all()  # every vector moved
    assert len(res.losses) == 1 and np.isfinite(res.losses[0])


def test_save_load_round_trip_restores_the_rows_exactly_and_is_small(
    base_dir, viral_frames, ti_cfg, tmp_path
):
    t2i = TextToImage.load(base_dir)
    res = ti.train_textual_inversion(t2i, viral_frames, ti_cfg, "style", seed=1, progress=False)
    path = ti.save_embeddings(
        tmp_path / ti.EMBEDDINGS_FILE, ti_cfg.placeholder_token, res.embeddings
    )
    assert path.stat().st_size < 1024 * 1024
    loaded = TextToImage.load(base_dir)
    ids = ti.load_embeddings(loaded, path, ti_cfg.placeholder_token)
    rows = loaded.text_encoder.get_input_embeddings().weight[ids]
    assert torch.equal(rows, res.embeddings)


def test_the_token_changes_the_images(base_dir, viral_frames, ti_cfg, tmp_path):
    t2i = TextToImage.load(base_dir)
    ti.train_textual_inversion(t2i, viral_frames[:1], ti_cfg, "object", seed=0, progress=False)
    token = ti.prompt_token(ti_cfg.placeholder_token, ti_cfg.num_vectors)
    prompts = ti.candidate_prompts(token, "object", 3)
    imgs = t2i.sample(prompts, seed=0, steps=2, guidance_scale=2.0, batch_size=2)
    assert imgs.shape == (3, t2i.resolution, t2i.resolution) and imgs.dtype == np.float32
    assert 0.0 <= imgs.min() and imgs.max() <= 1.0
    plain = t2i.sample(
        [p.replace(token, "lung ultrasound") for p in prompts], 0, 2, 2.0, batch_size=2
    )
    assert not np.array_equal(imgs, plain)


def test_a_folder_that_is_not_a_pipeline_says_what_to_do(tmp_path):
    with pytest.raises(BaseModelError, match="generate.base"):
        TextToImage.load(tmp_path)


def test_prompts_use_the_templates():
    prompts = ti.candidate_prompts("<t>", "style", 3)
    assert prompts[0] == ti.STYLE_TEMPLATES[0].format("<t>")
    assert all("<t>" in p for p in prompts)
    assert ti.prompt_token("<t>", 3) == "<t> <t>_1 <t>_2"
