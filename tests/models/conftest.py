"""Fixtures for the classifier tests: micro params made faster still, a tiny PNG data set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lusaug.config import Params
from tests.helpers.toy import write_toy_dataset


@pytest.fixture(scope="session")
def clf_params(micro_params: Params) -> Params:
    """Micro profile, one thread, no model logging, no early stopping, 2 epochs."""
    train = dataclasses.replace(
        micro_params.train, threads=1, log_model=False, patience=0, epochs=2, batch_size=16
    )
    return dataclasses.replace(micro_params, train=train)


@pytest.fixture(scope="session")
def toy_splits(tmp_path_factory: pytest.TempPathFactory, clf_params: Params) -> Path:
    """A tiny learnable data set (frames/ + splits.csv) shared by the tests of this folder."""
    root = tmp_path_factory.mktemp("toy-data")
    return write_toy_dataset(root, clf_params.base.classes, size=clf_params.base.image_size)
