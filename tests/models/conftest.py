"""Fixtures for the classifier tests: micro params made faster still, a tiny PNG data set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lusaug.core.config import PROJ_ROOT, Params, as_flat_dict
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import TrainResult
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.strategies import FoldInputs
from lusaug.models.train_loop import train_classifier
from tests.helpers.toy import write_toy_dataset


@pytest.fixture(scope="session")
def clf_params(micro_params: Params) -> Params:
    """Micro profile, one thread, no model logging, no early stopping, 2 epochs; every strategy
    on train.architectures x train.seeds (no overrides), so tests can narrow the matrix."""
    train = dataclasses.replace(
        micro_params.train,
        threads=1,
        log_model=False,
        patience=0,
        epochs=2,
        batch_size=16,
        overrides=[],
    )
    return dataclasses.replace(micro_params, train=train)


@pytest.fixture(scope="session")
def toy_splits(tmp_path_factory: pytest.TempPathFactory, clf_params: Params) -> Path:
    """A tiny learnable data set (frames/ + splits.csv) shared by the tests of this folder."""
    root = tmp_path_factory.mktemp("toy-data")
    return write_toy_dataset(root, clf_params.base.classes, size=clf_params.base.image_size)


def run_once(
    params: Params,
    splits: Path,
    out_dir: Path,
    strategy: str,
    arch: str,
    seed: int,
    inputs: FoldInputs | None = None,
    tracking: RunTracking | None = None,
    **kwargs,
) -> TrainResult:
    """Prepare and train one run, as train@<fold> does for each run of its matrix."""
    data = FoldData.load(splits, params.base)
    setup = prepare_run(RunSpec(strategy, arch, seed), data, params.train, params.base, inputs)
    return train_classifier(
        setup,
        out_dir,
        params.train,
        params.base.classes,
        progress=False,
        tracking=tracking,
        **kwargs,
    )


def tracking_for(params: Params, root: Path = PROJ_ROOT) -> RunTracking:
    """MLflow tracking as the stage scripts set it up (MLFLOW_TRACKING_URI wins)."""
    return RunTracking(params.mlflow.tracking_uri, as_flat_dict(params), root=root)
