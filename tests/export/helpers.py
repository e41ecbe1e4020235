"""Tiny real inputs for the export/serving/registry tests: frames + splits, checkpoints, runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lusaug.data.manifest import MANIFEST_COLUMNS
from lusaug.models.classifier import ClassifierMeta, build_classifier, save_checkpoint

CLASSES = ["regular", "covid", "pneumonia", "viral"]
SIZE = 32
TINY = {
    "resnet": ("test_resnet", {}),
    "vit": ("test_vit", {"img_size": SIZE, "patch_size": 8}),
}


def frame(label_idx: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A grey frame whose texture depends on the class (so predictions are not all equal)."""
    _, xx = np.mgrid[0:size, 0:size]
    base = 60 + 40 * label_idx + 30 * np.sin(xx * (label_idx + 1) / 4.0)
    return np.clip(base + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_splits(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write data/frames/<label>/*.png and data/splits.csv (manifest columns + split)."""
    per_class = per_class or {"train": 6, "val": 3, "test": 4}
    rng = np.random.default_rng(seed)
    data = root / "data"
    rows = []
    for ci, label in enumerate(CLASSES):
        for split, n in per_class.items():
            for k in range(n):
                vid = f"{label}_{split}_v{k % 2}"
                rel = f"frames/{label}/{vid}_{k:05d}.png"
                out = data / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                raw = png_bytes(frame(ci, rng))
                out.write_bytes(raw)
                rows.append(
                    {
                        "path": rel,
                        "label": label,
                        "video_id": vid,
                        "patient_id": f"p_{label}_{split}",
                        "probe": "convex",
                        "source": "test",
                        "license": "test",
                        "width": SIZE,
                        "height": SIZE,
                        "sha1": hashlib.sha1(raw).hexdigest(),
                        "split": split,
                    }
                )
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + ["split"])
    path = data / "splits.csv"
    df.to_csv(path, index=False)
    return path


def make_checkpoint(path: Path, arch: str = "resnet", seed: int = 0, **extra: object) -> Path:
    import torch

    torch.manual_seed(seed)
    name, kwargs = TINY[arch]
    meta = ClassifierMeta(
        model=name,
        kwargs=dict(kwargs),
        classes=list(CLASSES),
        image_size=SIZE,
        extra={"architecture": arch, "seed": seed, **extra},
    )
    model = build_classifier(meta).eval()
    save_checkpoint(path, model, meta)
    return path


def make_validation_runs(root: Path, runs: dict[str, dict]) -> Path:
    """metrics/validation_runs.json in issue 3's layout, with checkpoints made on the fly.

    ``runs`` maps run name -> {"f1": value, "ci": [lo, hi], "arch": ..., "strategy": ...}.
    """
    out = {}
    for name, spec in runs.items():
        arch = spec.get("arch", "resnet")
        ckpt = root / "models" / "classifiers" / name / "model.pt"
        make_checkpoint(
            ckpt, arch, seed=spec.get("seed", 0), strategy=spec.get("strategy", "baseline")
        )
        lo, hi = spec.get("ci", [spec["f1"] - 0.05, spec["f1"] + 0.05])
        out[name] = {
            "strategy": spec.get("strategy", "baseline"),
            "architecture": arch,
            "seed": spec.get("seed", 0),
            "checkpoint": os.path.relpath(ckpt, root),
            "mlflow_run_id": spec.get("run_id", ""),
            "val_f1_macro": spec["f1"],
            "val_f1_macro_lo": lo,
            "val_f1_macro_hi": hi,
            "val_accuracy": spec.get("acc", 0.5),
        }
    path = root / "metrics" / "validation_runs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_and_export(root: Path, params, runs: dict[str, dict], tag: str) -> dict:
    """Run the real register + export stage functions on a fake validation_runs.json.

    ``root`` must hold data/splits.csv; the runs' checkpoints go under ``root/tag``.
    """
    from lusaug.stages import export, register

    vr = make_validation_runs(root / tag, runs)
    splits, regfile = root / "data" / "splits.csv", root / tag / "registered.json"
    p = params
    reg = register.run(
        register.RegisterPaths(vr, splits, regfile),
        p.base,
        p.frames,
        p.register,
        p.export,
        p.mlflow,
        root=root / tag,
    )
    paths = export.ExportPaths(
        regfile, splits, root / tag / "onnx", root / tag / "onnx_parity.json"
    )
    export.run(paths, p.export, p.mlflow, root=root / tag)
    return reg
