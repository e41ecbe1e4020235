"""ONNX export: checked graph with metadata, dynamic batch, parity with PyTorch, int8 variants."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pandas as pd
import pytest

from lusaug.export.onnx_export import (
    export_onnx,
    graph_kind,
    load_split_frames,
    verify_and_quantize,
)
from lusaug.export.onnx_runtime import ModelSourceError, OnnxClassifier
from lusaug.models.classifier import load_classifier
from tests.export.helpers import CLASSES, SIZE, make_checkpoint, make_splits


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return make_splits(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("arch,int8_mode", [("resnet", "static"), ("vit", "dynamic")])
def test_export_parity_and_int8(tmp_path, params, splits, arch, int8_mode):
    model, meta = load_classifier(make_checkpoint(tmp_path / "model.pt", arch))
    onnx_path = export_onnx(
        model, meta, tmp_path / "classifier.onnx", params.export, source_run="r1"
    )

    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["lusaug.classes"]) == CLASSES
    assert props["lusaug.image_size"] == str(SIZE) and props["lusaug.source_run"] == "r1"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph_kind(onnx_path) == ("cnn" if arch == "resnet" else "transformer")

    clf = OnnxClassifier(onnx_path)
    for n in (1, 5):  # dynamic batch axis
        assert clf.logits(np.zeros((n, 1, SIZE, SIZE), np.float32)).shape == (n, len(CLASSES))

    report = verify_and_quantize(model, onnx_path, splits, params.export, tmp_path / "q.onnx")
    par = report["parity"]
    assert par["passed"] and par["max_abs_diff"] <= params.export.parity_atol
    n_val = int((pd.read_csv(splits)["split"] == "val").sum())  # the final split has no test
    assert par["split"] == "val" and par["frames"] == n_val and par["argmax_agreement"] == 1.0
    q = report["int8"]
    assert q["mode"] == int8_mode  # auto: static QDQ for CNNs, dynamic for ViTs
    assert q["calibration_split"] == ("train" if int8_mode == "static" else None)
    qclf = OnnxClassifier(tmp_path / "q.onnx")  # preprocessing metadata survives quantisation
    assert qclf.info.classes == CLASSES and qclf.info.metadata["int8"] == int8_mode
    assert qclf.proba(np.zeros((3, 1, SIZE, SIZE), np.float32)).shape == (3, 4)
    # the report's int8 figures are what the two graphs do on the parity frames
    frames, labels = load_split_frames(splits, "val", params.export.parity_max_frames, 0)
    assert len(frames) == par["frames"]
    x, y = clf.normalise(frames), np.array([CLASSES.index(c) for c in labels])
    fp32, int8 = clf.logits(x).argmax(1), qclf.logits(x).argmax(1)
    assert par["accuracy_onnx"] == pytest.approx(float((fp32 == y).mean()))
    assert q["accuracy_int8"] == pytest.approx(float((int8 == y).mean()))
    assert q["accuracy_delta"] == pytest.approx(q["accuracy_int8"] - par["accuracy_onnx"])
    assert q["argmax_agreement_with_fp32"] == pytest.approx(float((int8 == fp32).mean()))


def test_parity_catches_a_different_model(tmp_path, params, splits):
    """Parity against other weights fails: the check can actually fail."""
    model_a, meta = load_classifier(make_checkpoint(tmp_path / "a.pt", "resnet", seed=1))
    model_b, _ = load_classifier(make_checkpoint(tmp_path / "b.pt", "resnet", seed=2))
    onnx_path = export_onnx(model_a, meta, tmp_path / "a.onnx", params.export)
    cfg = dataclasses.replace(params.export, int8="none")
    report = verify_and_quantize(model_b, onnx_path, splits, cfg, None)
    assert not report["parity"]["passed"]
    assert report["parity"]["max_abs_diff"] > cfg.parity_atol
    assert report["int8"] == {"mode": "none"}


def test_onnx_without_metadata_is_refused(tmp_path, params):
    model, meta = load_classifier(make_checkpoint(tmp_path / "m.pt"))
    path = export_onnx(model, meta, tmp_path / "m.onnx", params.export)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelSourceError, match="preprocessing metadata"):
        OnnxClassifier(tmp_path / "bare.onnx")
