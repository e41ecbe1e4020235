"""Tiny DDPMs: learning, save/load, samplers, checkpoints and resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lusaug.core.config import ConfigError
from lusaug.generators.ddpm import (
    build_scheduler,
    build_unet,
    latest_checkpoint,
    load_ddpm,
    save_ddpm,
    to_model_space,
    train_ddpm,
)
from lusaug.generators.diffusion_loop import Checkpointing
from lusaug.generators.sampling import sample_ddpm

torch.set_num_threads(1)


def fixed_batch_loss(unet, cfg, images, seed=123, labels=None) -> float:
    """The training loss (noise or velocity MSE) on a fixed batch, noise and timesteps."""
    g = torch.Generator().manual_seed(seed)
    x0 = to_model_space(images, cfg.resolution)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, cfg.num_train_timesteps, (len(x0),), generator=g)
    sched = build_scheduler(cfg)
    kwargs = {"class_labels": torch.as_tensor(labels)} if labels is not None else {}
    target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
    with torch.no_grad():
        return float(F.mse_loss(unet(sched.add_noise(x0, noise, t), t, **kwargs).sample, target))


@pytest.fixture(scope="module")
def trained(viral_frames, tiny_ddpm_cfg):
    cfg = dataclasses.replace(tiny_ddpm_cfg, train_steps=40)
    unet, sched, res = train_ddpm(viral_frames, cfg, seed=0, progress=False)
    return cfg, unet, sched, res


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(trained, viral_frames):
    cfg, unet, _, res = trained
    torch.manual_seed(0)
    fresh = build_unet(cfg)  # the same initial weights train_ddpm starts from
    before = fixed_batch_loss(fresh, cfg, viral_frames)
    after = fixed_batch_loss(unet, cfg, viral_frames)
    assert after < 0.8 * before, (before, after)
    assert len(res.losses) == 40 and res.images_per_second > 0


def test_save_load_round_trip_gives_identical_samples(trained, tmp_path):
    from diffusers import DDPMPipeline

    cfg, unet, sched, _ = trained
    save_ddpm(tmp_path, unet, sched, {"kind": "ddpm"})
    a = sample_ddpm(unet, sched.config, 3, "dpmsolver++", 5, 2, seed=7)
    unet2, sched2, meta = load_ddpm(tmp_path)
    for k, v in unet.state_dict().items():
        assert torch.equal(v, unet2.state_dict()[k]), k  # bit-identical weights
    b = sample_ddpm(unet2, sched2.config, 3, "dpmsolver++", 5, 2, seed=7)
    # same images; oneDNN may pick another kernel for differently aligned tensors, which can
    # move the last float bit (1e-7), hence a tolerance far below one grey level (1/255)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert meta == {"kind": "ddpm"}
    pipe = DDPMPipeline.from_pretrained(tmp_path)  # the standard diffusers loader works too
    out = pipe(
        batch_size=1,
        num_inference_steps=3,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.images.shape == (1, cfg.resolution, cfg.resolution, 1)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 20), ("ddim", 5), ("dpmsolver++", 5)])
def test_each_sampler_returns_count_shape_and_is_seeded(trained, sampler, steps):
    cfg, unet, sched, _ = trained
    a = sample_ddpm(unet, sched.config, 5, sampler, steps, batch_size=2, seed=1)
    assert a.shape == (5, cfg.resolution, cfg.resolution) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, sample_ddpm(unet, sched.config, 5, sampler, steps, 2, 1))
    assert not np.array_equal(a, sample_ddpm(unet, sched.config, 5, sampler, steps, 2, 2))


def test_full_ddpm_chain_runs_1000_steps(trained):
    cfg, _, sched, _ = trained
    from lusaug.generators.sampling import make_scheduler

    s = make_scheduler("ddpm", sched.config)
    s.set_timesteps(cfg.num_train_timesteps)
    assert len(s.timesteps) == 1000  # what the benchmark's DDPM-1000 runs


def test_conditional_model_saves_unet_and_scheduler_and_samples_a_class(
    viral_frames, splits_csv, tiny_ddpm_cfg, tmp_path
):
    from lusaug.generators.frame_io import load_frames, read_splits

    splits = read_splits(splits_csv)
    train = splits[splits.split == "train"]
    classes = ["regular", "covid", "pneumonia", "viral"]
    imgs = load_frames(train, splits_csv, 32)
    labels = np.array([classes.index(c) for c in train.label])
    cfg = dataclasses.replace(tiny_ddpm_cfg, train_steps=4)
    unet, sched, _ = train_ddpm(imgs, cfg, 0, labels=labels, num_classes=4, progress=False)
    assert unet.config.num_class_embeds == 4
    save_ddpm(tmp_path, unet, sched, {"kind": "ddpm_conditional"})
    assert (tmp_path / "unet" / "config.json").exists()
    assert (tmp_path / "scheduler" / "scheduler_config.json").exists()
    unet2, sched2, _ = load_ddpm(tmp_path)
    a = sample_ddpm(unet2, sched2.config, 2, "ddim", 3, 2, seed=0, class_label=3)
    b = sample_ddpm(unet2, sched2.config, 2, "ddim", 3, 2, seed=0, class_label=0)
    assert a.shape == (2, 16, 16) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="class_label"):
        sample_ddpm(unet2, sched2.config, 1, "ddim", 3, 1, seed=0)


class Interrupt(Exception):
    pass


def test_checkpoints_are_pruned_and_resume_continues_exactly(
    viral_frames, tiny_ddpm_cfg, tmp_path
):
    cfg = dataclasses.replace(
        tiny_ddpm_cfg, train_steps=8, checkpoint_every=2, checkpoints_total_limit=2
    )
    ref, _, _ = train_ddpm(viral_frames, cfg, 3, progress=False)

    def stop_at_4(step, unet, losses):
        if step == 4:
            raise Interrupt

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        train_ddpm(
            viral_frames,
            cfg,
            3,
            checkpoints=Checkpointing(ckpt, fingerprint="fp"),
            on_checkpoint=stop_at_4,
            progress=False,
        )
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert latest_checkpoint(ckpt).name == "checkpoint-4"
    resumed, _, res = train_ddpm(
        viral_frames,
        cfg,
        3,
        checkpoints=Checkpointing(ckpt, resume=True, fingerprint="fp"),
        progress=False,
    )
    assert res.resumed_from == 4 and len(res.losses) == 8
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-6", "checkpoint-8"]
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_resume_ignores_a_checkpoint_of_another_config(viral_frames, tiny_ddpm_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_ddpm_cfg, train_steps=2, checkpoint_every=1)
    first = Checkpointing(tmp_path, fingerprint="a")
    train_ddpm(viral_frames, cfg, 0, checkpoints=first, progress=False)
    _, _, res = train_ddpm(
        viral_frames,
        cfg,
        0,
        checkpoints=Checkpointing(tmp_path, resume=True, fingerprint="b"),
        progress=False,
    )
    assert res.resumed_from == 0


def test_bad_unet_shapes_are_explained(tiny_ddpm_cfg):
    with pytest.raises(ValueError, match="divisible"):
        build_unet(dataclasses.replace(tiny_ddpm_cfg, resolution=18, block_out_channels=[8, 8, 8]))
    with pytest.raises(ConfigError, match="norm_num_groups 8 must divide every width"):
        dataclasses.replace(tiny_ddpm_cfg, block_out_channels=[8, 12])  # refused as config
