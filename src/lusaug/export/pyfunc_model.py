"""MLflow models-from-code pyfunc: base64 PNG/JPEG in, class probabilities out, ONNX inside.

Logged by :func:`lusaug.export.mlflow_model.log_onnx_pyfunc` with ``python_model=<this file>``
and the ONNX file as the ``onnx`` artifact. It must be models-from-code: logging a PythonModel
*instance* fails because an onnxruntime ``InferenceSession`` cannot be pickled (ecosystem.md §1).

Request to ``mlflow models serve``: ``{"inputs": ["<base64 png>", ...]}``; each prediction is
``{"label": ..., "prob": ..., "probs": {class: p}}``. Preprocessing is lusaug's own
(:mod:`lusaug.export.model_input`) with the numbers stored in the ONNX metadata, so this model
needs the ``lusaug`` package in its environment (``--env-manager local``).
"""

from __future__ import annotations

import os
from typing import Any

import mlflow

from lusaug.export.model_input import decode_base64_image
from lusaug.export.onnx_runtime import OnnxClassifier


class OnnxImageClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        # Same session settings as `lusaug serve` (serve.threads): the servers compare fairly.
        self.clf = OnnxClassifier(
            context.artifacts["onnx"], threads=int(os.environ.get("LUSAUG_ORT_THREADS", "1"))
        )

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        frames = [decode_base64_image(s, name=f"inputs[{i}]") for i, s in enumerate(model_input)]
        probs = self.clf.proba(self.clf.frames_to_input(frames))
        classes = self.clf.info.classes
        return [
            {
                "label": classes[int(p.argmax())],
                "prob": float(p.max()),
                "probs": {c: float(v) for c, v in zip(classes, p)},
            }
            for p in probs
        ]


mlflow.models.set_model(OnnxImageClassifier())
