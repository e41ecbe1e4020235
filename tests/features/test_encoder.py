"""The self-supervised encoder: training patients only, deterministic, resumable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lusaug.core.config.features_sections import default_features
from lusaug.features import train as ssl_train
from lusaug.features.encoder import SslEncoder
from lusaug.features.frame_table import FeaturesError
from lusaug.features.train import ENCODER_FILE, STATE_FILE, SslRequest, train_ssl
from tests.features.helpers import toy_fold

TINY = {
    "kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8},
    "resolution": 16,
    "hidden_dim": 16,
    "projection_dim": 8,
    "epochs": 2,
    "batch_size": 8,
    "threads": 1,
}


@pytest.fixture(scope="module")
def fold():
    return toy_fold()


def _request(frames, out, **ssl):
    return SslRequest(frames, default_features(ssl={**TINY, **ssl}).ssl, out, progress=False)


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_frame_of_another_split_fails_before_training(fold, tmp_path, split):
    train, val = fold
    intruder = val.where(np.arange(len(val)) == 0)
    intruder.rows["split"] = split
    rows = train.rows.copy()
    mixed = type(train)(
        np.concatenate([train.images, intruder.images]),
        pd.concat([rows, intruder.rows], ignore_index=True),
    )
    with pytest.raises(FeaturesError, match=f"training patients only.*{split}"):
        train_ssl(_request(mixed, tmp_path))
    assert not (tmp_path / ENCODER_FILE).exists()


def _weights(encoder: SslEncoder) -> list[torch.Tensor]:
    return [t.clone() for t in encoder.backbone.state_dict().values()]


@pytest.mark.slow  # trains twice (~1 min on a loaded 2-core machine)
def test_training_is_deterministic_and_gives_features(fold, tmp_path):
    train, val = fold
    a = train_ssl(_request(train, tmp_path / "a"))
    b = train_ssl(_request(train, tmp_path / "b"))
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.encoder), _weights(b.encoder)))
    assert len(a.losses) == 2 and all(np.isfinite(a.losses))
    loaded = SslEncoder.load(tmp_path / "a" / ENCODER_FILE)
    feats = loaded.features(val.images)
    assert feats.shape == (len(val), loaded.meta.num_features)
    np.testing.assert_allclose(feats, a.encoder.features(val.images), rtol=1e-5, atol=1e-6)
    assert loaded.meta.extra["train_patients"] == sorted(set(train.column("patient_id")))
    assert not (tmp_path / "a" / STATE_FILE).exists(), "the resume state goes once finished"
    again = train_ssl(_request(train, tmp_path / "a"))
    assert again.epochs_trained == 0, "a finished encoder with the same inputs is reused"


@pytest.mark.slow  # trains twice (~1 min on a loaded 2-core machine)
def test_an_interrupted_run_resumes_to_the_same_weights(fold, tmp_path, monkeypatch):
    train, _ = fold
    whole = train_ssl(_request(train, tmp_path / "whole"))
    real_save = ssl_train._save_state

    def crash_after_first_epoch(run, path, epoch, fingerprint):
        real_save(run, path, epoch, fingerprint)
        raise KeyboardInterrupt  # the process dies right after epoch 1's checkpoint

    monkeypatch.setattr(ssl_train, "_save_state", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_ssl(_request(train, tmp_path / "cut"))
    monkeypatch.setattr(ssl_train, "_save_state", real_save)
    assert (tmp_path / "cut" / STATE_FILE).exists()
    resumed = train_ssl(_request(train, tmp_path / "cut"))
    assert resumed.resumed_from == 1 and resumed.epochs_trained == 1
    assert resumed.losses == pytest.approx(whole.losses)
    assert all(
        torch.equal(x, y) for x, y in zip(_weights(whole.encoder), _weights(resumed.encoder))
    )
