"""Log an ONNX classifier to MLflow as a models-from-code pyfunc that takes base64 images.

The registered version of ``lus-classifier`` is this pyfunc, so both ``mlflow models serve -m
models:/lus-classifier@production --env-manager local`` and ``lusaug serve --model
models:/lus-classifier@production`` serve the very same ONNX file (its ``onnx`` artifact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import onnxruntime
import PIL

from lusaug.export.model_input import encode_png_base64
from lusaug.export.onnx_runtime import OnnxClassifier

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
ONNX_ARTIFACT = "onnx"  # artifact key; the file keeps its name (classifier.onnx)


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them spawns a subprocess and costs seconds)."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"onnxruntime=={onnxruntime.__version__}",
        f"pillow=={PIL.__version__}",
        f"numpy=={np.__version__}",
        "opencv-python-headless",
    ]


def log_onnx_pyfunc(onnx_path: Path | str, name: str = "classifier", **kwargs: Any) -> Any:
    """Log the pyfunc inside the active run; returns MLflow's ``ModelInfo`` (``model_uri``...).

    The input example is one mid-grey PNG of the model's own size, so MLflow's signature
    validation runs the real preprocessing and session once.
    """
    info = OnnxClassifier(onnx_path).info
    example = [encode_png_base64(np.full((info.image_size, info.image_size), 128, np.uint8))]
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_FILE),
        artifacts={ONNX_ARTIFACT: str(onnx_path)},
        input_example=example,
        pip_requirements=pip_requirements(),
        **kwargs,
    )
