"""A finished cross-validated run to write up: a copy of the repository's committed run outputs
(``$LUSAUG_TEST_RUN_DIR`` points the tests at another finished run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lusaug.core.config import PROJ_ROOT
from tests.reporting.helpers import copy_run

RUN_DIR_ENV = "LUSAUG_TEST_RUN_DIR"


@pytest.fixture()
def cv_run(tmp_path: Path) -> Path:
    """A copy of a finished cross-validated run's committed outputs plus small figures; skipped
    when the repository holds no such run."""
    repo = copy_run(Path(os.environ.get(RUN_DIR_ENV, PROJ_ROOT)), tmp_path / "run")
    if isinstance(repo, str):
        pytest.skip(repo)
    return repo
