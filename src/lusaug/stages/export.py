"""Stage ``export``: materialise and verify the registered candidate's ONNX.

``register`` already converted the winner to ONNX (the registered version *is* the ONNX pyfunc);
this stage downloads exactly that file from the registry (its sha256 must match the version's
``onnx_sha256`` tag), runs ``onnx.checker`` (full check), compares its logits with the PyTorch
checkpoint on the test frames, writes an int8 variant with its accuracy delta, writes
``models/onnx/`` and ``reports/onnx_parity.json``, and records the verdict on the version
(``onnx_parity`` = passed | failed), which the promotion gate reads.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

from lusaug.core.config import ExportParams, MlflowParams
from lusaug.core.errors import LusaugError
from lusaug.core.mlflow_store import setup_experiment
from lusaug.core.utils import sha256_file, write_json
from lusaug.export.model_source import resolve_model
from lusaug.export.onnx_export import copy_checked, verify_and_quantize
from lusaug.models.classifier import load_classifier
from lusaug.tracking.versions import set_export_tags

logger = logging.getLogger(__name__)
ONNX_NAME = "classifier.onnx"
INT8_NAME = "classifier.int8.onnx"


class ParityFailed(LusaugError, RuntimeError):
    """The exported graph does not reproduce the PyTorch logits (report written, tag = failed)."""


@dataclass(frozen=True)
class ExportPaths:
    registered: Path  # models/registered.json (what `register` registered)
    splits: Path  # data/splits/fold-final.csv (parity frames; training frames calibrate int8)
    onnx: Path  # models/onnx (classifier.onnx, classifier.int8.onnx)
    report: Path  # reports/onnx_parity.json


def run(
    paths: ExportPaths,
    cfg: ExportParams,
    mlflow_cfg: MlflowParams,
    *,
    seed: int = 0,
    root: Path | str = ".",
) -> dict[str, Any]:
    """Verify the registered version's ONNX; write ``paths.onnx``/{classifier,classifier.int8}.onnx.

    ``seed`` (``base.seed``) draws the parity and calibration frames. Raises
    :class:`ParityFailed` after writing the report and tagging the version when parity fails, so
    ``dvc repro`` stops and the promotion gate refuses the version.
    """
    setup_experiment("classifiers", mlflow_cfg.tracking_uri, root)
    reg = json.loads(Path(paths.registered).read_text())
    name, version = reg["name"], str(reg["version"])
    ckpt = Path(reg["checkpoint"])
    ckpt = ckpt if ckpt.is_absolute() else Path(root) / ckpt
    if sha256_file(ckpt) != reg["checkpoint_sha256"]:
        raise ValueError(
            f"{ckpt} changed since it was registered as {name} v{version}: run `dvc repro`"
        )
    out_dir = Path(paths.onnx)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / ONNX_NAME, out_dir / INT8_NAME):
        stale.unlink(missing_ok=True)  # a failed run must not leave the last run's files behind
    with tempfile.TemporaryDirectory() as tmp:
        source = resolve_model(f"models:/{name}/{version}", tmp)
        onnx_path = copy_checked(source.path, out_dir / ONNX_NAME, reg["onnx_sha256"])
    model, _ = load_classifier(ckpt)
    int8_path = None if cfg.int8 == "none" else out_dir / INT8_NAME
    report = verify_and_quantize(model, onnx_path, paths.splits, cfg, int8_path, seed)
    report["registry"] = {"name": name, "version": version, "run_name": reg.get("run_name")}
    write_json(paths.report, report)
    set_export_tags(name, version, report)
    with mlflow.start_run(
        run_name="export",
        tags={"registered_version": version, "run_name": reg.get("run_name", "")},
    ):
        mlflow.log_dict(report, "onnx_parity.json")
        mlflow.log_metric("onnx_parity_max_abs_diff", report["parity"]["max_abs_diff"])
        if "accuracy_delta" in report["int8"]:
            mlflow.log_metric("int8_accuracy_delta", report["int8"]["accuracy_delta"])
    if not report["parity"]["passed"]:
        raise ParityFailed(
            f"ONNX parity failed for {name} v{version}: max |diff| "
            f"{report['parity']['max_abs_diff']:.2e} (atol {cfg.parity_atol}), argmax agreement "
            f"{report['parity']['argmax_agreement']:.3f}; "
            f"see {paths.report}"
        )
    return report
