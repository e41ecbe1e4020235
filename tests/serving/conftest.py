"""Fixtures of the server tests: one tiny exported ONNX classifier per session."""

from __future__ import annotations

import pytest

from lusaug.export.onnx_export import export_onnx
from lusaug.models.classifier import load_classifier
from tests.export.helpers import make_checkpoint


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory, params):
    d = tmp_path_factory.mktemp("serve")
    model, meta = load_classifier(make_checkpoint(d / "m.pt"))
    return export_onnx(model, meta, d / "classifier.onnx", params.export)
