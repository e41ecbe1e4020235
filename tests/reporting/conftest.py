"""A finished cross-validated run to write up: a copy of the run outputs committed under
``tests/reporting/run`` (``$LUSAUG_TEST_RUN_DIR`` points the tests at another finished run, e.g.
the repository root after ``make run``). Refresh them from a finished run with
``python -m tests.reporting.helpers PATH/TO/RUN`` (it copies ``RUN_FILES``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reporting.helpers import FIXTURE_RUN, copy_run

RUN_DIR_ENV = "LUSAUG_TEST_RUN_DIR"


@pytest.fixture()
def cv_run(tmp_path: Path) -> Path:
    """A copy of a finished cross-validated run's outputs plus small figures; skipped when the
    run is absent."""
    repo = copy_run(Path(os.environ.get(RUN_DIR_ENV, FIXTURE_RUN)), tmp_path / "run")
    if isinstance(repo, str):
        pytest.skip(repo)
    return repo
