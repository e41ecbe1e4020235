"""Sections of the registry, export and serving: register, export, serve, mlflow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegisterParams:
    model_name: str  # registered model name in the MLflow Model Registry
    metric: str  # VALIDATION metric that picks the winner (key in metrics/validation_runs.json)
    alias: str  # alias of a new version (first of candidate -> staging -> production)
    promote_to: list[str]  # aliases `lusaug promote --to` accepts, in promotion order
    gate_metric: str  # validation metric a promotion must not lose on (beyond its interval)
    require_parity: bool  # promotion needs the export stage's ONNX parity tag = passed


@dataclass(frozen=True)
class ExportParams:
    opset: int  # ONNX opset of the exported graph
    dynamo: bool  # torch.onnx dynamo exporter (slow, opset>=18) vs the legacy tracer (fast)
    parity_atol: float  # max |logits_torch - logits_onnx| allowed on the test frames
    parity_max_frames: int  # test frames used for parity and int8 accuracy (0 = all)
    batch_size: int  # frames per forward pass during parity and calibration
    int8: str  # none | auto | static | dynamic (auto: static QDQ for CNNs, dynamic for ViTs)
    calib_frames: int  # training frames used to calibrate static int8


@dataclass(frozen=True)
class ServeParams:
    host: str  # bind address; 127.0.0.1 unless you mean to expose the server
    port: int  # TCP port of `lusaug serve`
    model: str  # default model: models:/<name>@<alias> or a path to an .onnx file
    max_request_mb: float  # larger request bodies are refused with 413 before parsing
    max_files: int  # most images in one /predict request
    max_image_side: int  # longest image side accepted (checked from the header, before decoding)
    max_image_pixels: int  # most pixels per image (decompression-bomb guard)
    max_video_frames: int  # most frames decoded from one video (after sampling)
    max_request_pixels: int  # decoded pixels per request (images + kept video frames, padded)
    max_inflight_mb: float  # memory across requests: bodies held plus decode working sets
    admission_wait_s: float  # how long a request waits for that budget before 503
    retry_after_s: int  # the 503's Retry-After header (seconds)
    inline_decode_pixels: int  # padded pixels up to which images decode on the event loop
    inline_inspect_bytes: int  # bodies up to this size have their headers read on the event loop
    batch_window_ms: float  # micro-batching: wait this long for more requests (0 = no batching)
    max_batch: int  # micro-batching: most frames per ONNX run
    inline_max_frames: int  # a lone request this small runs on the event loop (0 = never)
    reload_poll_s: float  # seconds between registry alias checks (0 = no polling)
    threads: int  # onnxruntime intra-op threads (0 = onnxruntime default)
    access_log: bool  # uvicorn access log line per request (costs ~0.2 ms each)


@dataclass(frozen=True)
class MlflowParams:
    tracking_uri: str  # "" = sqlite:///<repo>/mlflow.db; MLFLOW_TRACKING_URI wins when set
