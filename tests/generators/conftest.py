"""Fixtures for the generator tests: a tiny frame set on disk, tiny configs, a private MLflow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lusaug.core.config import Params
from tests.generators.helpers import build_tiny_sd, make_frames_fixture


@pytest.fixture(scope="session")
def frames_root(tmp_path_factory) -> Path:
    """tmp/data/frames/*.png + data/splits.csv + metrics/validation.json (32 px, 4 classes)."""
    root = tmp_path_factory.mktemp("frames")
    make_frames_fixture(root, size=32)
    return root


@pytest.fixture(scope="session")
def splits_csv(frames_root) -> Path:
    return frames_root / "data" / "splits.csv"


@pytest.fixture(scope="session")
def viral_frames(splits_csv) -> np.ndarray:
    """uint8 (N, 32, 32) training frames of the rare class."""
    from lusaug.generators.frame_io import class_frames, load_frames, read_splits

    return load_frames(class_frames(read_splits(splits_csv), "viral"), splits_csv, 32)


@pytest.fixture(scope="session")
def gen_params(micro_params) -> Params:
    """The micro profile (32 px frames, 16 px DDPM, few steps) with checkpoints disabled."""
    assert micro_params.base.image_size == 32
    return micro_params


@pytest.fixture(scope="session")
def tiny_ddpm_cfg(micro_params):
    """A DDPM small and quick enough for unit tests."""
    return dataclasses.replace(
        micro_params.generate.ddpm,
        resolution=16,
        block_out_channels=[8, 16],
        norm_num_groups=8,
        attention=False,
        train_steps=12,
        batch_size=8,
        learning_rate=3e-3,
        lr_warmup_steps=2,
        checkpoint_every=0,
        ema_decay=0.9,
    )


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion saved with save_pretrained (no hub)."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "sd")


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A private SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, splits_csv, micro_params) -> Path:
    """Our own text-conditioned base (micro profile), trained 2 steps and saved."""
    from lusaug.generators.frame_io import load_frames, read_splits
    from lusaug.generators.text_base import base_training_data, train_base

    cfg = dataclasses.replace(micro_params.base_model, train_steps=2, checkpoint_every=0)
    data = base_training_data(read_splits(splits_csv), "viral", micro_params.base.classes)
    t2i, _ = train_base(load_frames(data.rows, splits_csv, 32), data, cfg, 0, progress=False)
    out = tmp_path_factory.mktemp("base") / "base_model"
    t2i.pipe.save_pretrained(out)
    return out
