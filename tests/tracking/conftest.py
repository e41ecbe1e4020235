"""A registry with three versions, built once per session and copied for each test."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.tracking.helpers import build_registry, copy_registry, sqlite_uri, use_store


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-template")
    use_store(sqlite_uri(root))
    build_registry()
    return root


@pytest.fixture
def registry(registry_template, tmp_path, monkeypatch):
    """This test's own copy of the registry (cwd = its folder, with params.yaml)."""
    monkeypatch.setenv("LUSAUG_USER", "tester")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restored after the test; set just below
    copy_registry(registry_template, tmp_path)
    monkeypatch.chdir(tmp_path)
    return MlflowClient()
