"""PyTorch classifier -> ONNX with a dynamic batch axis, preprocessing metadata, parity and int8.

Exporter choice: the legacy TorchScript tracer (``dynamo=False``, params ``export.dynamo``) takes
~0.3 s and gave parity to ~1e-7 on ResNet and ViT here; the dynamo exporter works too but takes
3-6 s per model and needs opset >= 18 (ecosystem.md §7). The legacy exporter is deprecated in
torch 2.14 but not removed; flip ``export.dynamo`` when it goes.

Everything serving needs to preprocess an input (classes, image size, mean, std) is written into
the ONNX ``metadata_props`` under ``lusaug.*``, so the server reads it from the model it loads.

int8 (``export.int8``): static QDQ for CNNs (dynamic int8 turns Conv into ConvInteger, ~8x slower
on this CPU), dynamic for transformers (static QDQ was slower on ViT); ``auto`` picks by the
graph's ops. Static calibration uses frames from the TRAIN split only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.core.config import ExportParams
from lusaug.core.utils import atomic_path, sha256_file
from lusaug.data.manifest import frame_path, read_manifest
from lusaug.export.model_input import normalise
from lusaug.export.onnx_runtime import META_PREFIX, OnnxClassifier
from lusaug.models.classifier import ClassifierMeta

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INT8_MODES = ("none", "auto", "static", "dynamic")


def onnx_metadata(meta: ClassifierMeta, **extra: Any) -> dict[str, str]:
    """The ``lusaug.*`` metadata_props: preprocessing numbers plus provenance."""
    props = {
        "classes": json.dumps(list(meta.classes)),
        "image_size": str(meta.image_size),
        "mean": repr(float(meta.mean)),
        "std": repr(float(meta.std)),
        "timm_model": meta.model,
        "preprocessing": "grey uint8 -> resize to image_size (area) -> x/255 -> (x-mean)/std",
        "input_layout": "N,1,image_size,image_size float32",
    }
    props.update({f"extra.{k}": str(v) for k, v in meta.extra.items()})
    props.update({k: str(v) for k, v in extra.items() if v is not None})
    return {META_PREFIX + k: v for k, v in props.items()}


def set_metadata(model_proto: Any, props: dict[str, str]) -> None:
    """Replace the ``lusaug.*`` metadata_props of an in-memory ONNX model."""
    keep = [p for p in model_proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(keep)
    for k, v in sorted(props.items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = k, v


def export_onnx(
    model: Any,
    meta: ClassifierMeta,
    out_path: Path | str,
    cfg: ExportParams,
    **provenance: Any,
) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch axis; check it; write it atomically."""
    import onnx
    import torch

    model = model.eval()
    example = torch.zeros(2, 1, meta.image_size, meta.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on ViT; the parity check decides
            if cfg.dynamo:
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(
                    model,
                    (example,),
                    str(raw),
                    dynamo=True,
                    opset_version=max(cfg.opset, 18),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={_forward_arg(model): {0: batch}},
                    external_data=False,
                )
            else:
                torch.onnx.export(
                    model,
                    (example,),
                    str(raw),
                    dynamo=False,
                    opset_version=cfg.opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                )
        proto = onnx.load(str(raw))
    set_metadata(proto, onnx_metadata(meta, **provenance))
    proto.producer_name = "lusaug"
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out_path) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return Path(out_path)


def _forward_arg(model: Any) -> str:
    import inspect

    return next(iter(inspect.signature(model.forward).parameters))


def check_onnx(path: Path | str) -> None:
    """``onnx.checker`` with ``full_check`` (shape inference included); raises on failure."""
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


# The registered (final) model trained on every patient but its validation set, and its split has
# no test patients: parity, a numerical check, and the int8 deltas use the validation frames.
PARITY_SPLIT = "val"


def load_split_frames(
    splits_csv: Path | str, split: str, max_frames: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (uint8 N,S,S) and class indices of one split of ``data/splits.csv``.

    With ``max_frames`` > 0 a seeded random subset is taken (every class keeps its share).
    """
    from PIL import Image

    df = read_manifest(splits_csv)
    rows = df[df["split"] == split]
    if rows.empty:
        raise ValueError(f"{splits_csv} has no {split!r} frames")
    if 0 < max_frames < len(rows):
        rows = rows.sample(n=max_frames, random_state=seed).sort_index()
    frames = []
    for rel in rows["path"]:
        with Image.open(frame_path(splits_csv, rel)) as img:
            frames.append(np.asarray(img.convert("L"), dtype=np.uint8))
    return np.stack(frames), rows["label"].to_numpy()


def labels_to_index(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {classes}")
    return np.array([classes.index(str(c)) for c in labels], dtype=np.int64)


def torch_logits(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[i : i + batch_size])).float().numpy())
    return np.concatenate(out)


def ort_logits(clf: OnnxClassifier, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [clf.logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )


def graph_kind(path: Path | str) -> str:
    """``cnn`` when convolutions dominate the graph, else ``transformer`` (decides int8 mode)."""
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    return "cnn" if ops["Conv"] >= ops["MatMul"] + ops["Gemm"] else "transformer"


def resolve_int8_mode(mode: str, fp32_path: Path | str) -> str:
    if mode not in INT8_MODES:
        raise ValueError(f"export.int8 must be one of {INT8_MODES}, got {mode!r}")
    if mode == "auto":
        return "static" if graph_kind(fp32_path) == "cnn" else "dynamic"
    return mode


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs one INFO line per tensor on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over an in-memory batch list."""

    def __init__(self, x: np.ndarray, batch_size: int) -> None:
        self._batches = iter([x[i : i + batch_size] for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._batches, None)
        return None if b is None else {INPUT_NAME: b}


def quantize_int8(
    fp32_path: Path | str,
    out_path: Path | str,
    mode: str,
    calib_x: np.ndarray | None,
    batch_size: int,
) -> str:
    """Write an int8 copy of ``fp32_path`` (static QDQ or dynamic); returns the mode used."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    mode = resolve_int8_mode(mode, fp32_path)
    if mode == "none":
        raise ValueError("quantize_int8 called with int8 mode 'none'")
    props = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        q = Path(tmp) / "q.onnx"
        if mode == "static":
            if calib_x is None or len(calib_x) == 0:
                raise ValueError("static int8 needs calibration frames from the train split")
            quantize_static(
                str(pre),
                str(q),
                _CalibrationReader(calib_x, batch_size),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(str(pre), str(q), weight_type=QuantType.QInt8)
        proto = onnx.load(str(q))
        set_metadata(proto, {**props, META_PREFIX + "int8": mode})  # quantizers drop metadata
        with atomic_path(out_path) as tmp_out:
            onnx.save(proto, str(tmp_out))
    return mode


def verify_and_quantize(
    model: Any,
    onnx_path: Path | str,
    splits_csv: Path | str,
    cfg: ExportParams,
    int8_path: Path | str | None,
    seed: int = 0,
) -> dict[str, Any]:
    """The export stage's checks: checker, parity on the validation frames, optional int8 delta.

    Returns the parity report (also what ``reports/onnx_parity.json`` holds). ``parity.passed``
    is true when the max |logit difference| is within ``export.parity_atol`` and every frame
    gets the same predicted class.
    """
    check_onnx(onnx_path)
    clf = OnnxClassifier(onnx_path)
    info = clf.info
    frames, labels = load_split_frames(splits_csv, PARITY_SPLIT, cfg.parity_max_frames, seed)
    y = labels_to_index(labels, info.classes)
    x = normalise(frames, info.mean, info.std)
    ref = torch_logits(model, x, cfg.batch_size)
    got = ort_logits(clf, x, cfg.batch_size)
    diff = float(np.abs(ref - got).max())
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    acc_torch = float((ref.argmax(1) == y).mean())
    acc_onnx = float((got.argmax(1) == y).mean())
    report: dict[str, Any] = {
        "onnx": {
            "path": str(onnx_path),
            "sha256": info.sha256,
            "opset": cfg.opset,
            "exporter": "dynamo" if cfg.dynamo else "torchscript",
            "checker": "passed",
        },
        "parity": {
            "split": PARITY_SPLIT,
            "frames": len(x),
            "atol": cfg.parity_atol,
            "max_abs_diff": diff,
            "argmax_agreement": agree,
            "accuracy_torch": acc_torch,
            "accuracy_onnx": acc_onnx,
            "passed": bool(diff <= cfg.parity_atol and agree == 1.0),
        },
        "int8": {"mode": "none"},
    }
    logger.info(
        "ONNX parity on %d validation frames: max |diff| %.2e, argmax agreement %.3f",
        len(x),
        diff,
        agree,
    )
    if int8_path is not None and cfg.int8 != "none":
        mode = resolve_int8_mode(cfg.int8, onnx_path)
        calib = None
        if mode == "static":
            cf, _ = load_split_frames(splits_csv, "train", cfg.calib_frames, seed)
            calib = normalise(cf, info.mean, info.std)
        quantize_int8(onnx_path, int8_path, mode, calib, cfg.batch_size)
        q = ort_logits(OnnxClassifier(int8_path), x, cfg.batch_size)
        acc_int8 = float((q.argmax(1) == y).mean())
        report["int8"] = {
            "mode": mode,
            "path": str(int8_path),
            "sha256": sha256_file(int8_path),
            "calibration_split": "train" if mode == "static" else None,
            "calibration_frames": 0 if calib is None else len(calib),
            "accuracy_int8": acc_int8,
            "accuracy_delta": acc_int8 - acc_onnx,
            "argmax_agreement_with_fp32": float((q.argmax(1) == got.argmax(1)).mean()),
            "max_abs_diff_vs_fp32": float(np.abs(q - got).max()),
        }
    return report


def copy_checked(src: Path | str, dst: Path | str, expected_sha256: str | None = None) -> Path:
    """Copy an ONNX file into place atomically, refusing one whose hash is not the expected one."""
    if expected_sha256 and sha256_file(src) != expected_sha256:
        raise ValueError(f"{src}: sha256 differs from the registered {expected_sha256}")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
