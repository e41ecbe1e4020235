"""Keep MLflow's process-wide experiment/run ids from leaking between tests."""

import pytest

from tests.export.helpers import isolate_mlflow_env


@pytest.fixture(autouse=True)
def _isolated_mlflow_env(monkeypatch):
    isolate_mlflow_env(monkeypatch)
