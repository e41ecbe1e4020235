"""Fixtures of the server tests: one tiny exported ONNX classifier per session, and a live
server on it per test module (its metrics and budgets are that module's alone)."""

from __future__ import annotations

import pytest

from lusaug.export.onnx_export import export_onnx
from lusaug.models.classifier import load_classifier
from tests.export.helpers import make_checkpoint
from tests.serving.helpers import start_server


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory, params):
    d = tmp_path_factory.mktemp("serve")
    model, meta = load_classifier(make_checkpoint(d / "m.pt"))
    return export_onnx(model, meta, d / "classifier.onnx", params.export)


@pytest.fixture(scope="module")
def server(onnx_file, params):
    """`lusaug serve`'s app on the default ``serve:`` settings, under uvicorn on 127.0.0.1."""
    live = start_server(onnx_file, params)
    yield live
    live.stop()
