"""The FastAPI inference server: ONNX Runtime, micro-batching, hot reload, strict input checks.

Endpoints: ``POST /predict`` (multipart ``files``: PNG/JPEG images, or one video; or a single
image/video as the raw body with its ``Content-Type``),
``GET /health``, ``GET /metadata``, ``POST /reload`` (from localhost only). Every bad request gets
a 4xx JSON ``{"detail": reason}`` and the server keeps serving. Request bodies above
``serve.max_request_mb`` are cut off with 413 while streaming in; images are checked against the
size limits from their header before decoding; nothing from a request is ever unpickled.

Hot reload: when the server was started on an alias (``models:/lus-classifier@production``) a
background task polls the registry every ``serve.reload_poll_s`` seconds (and ``POST /reload``
checks at once). A new version is downloaded and its session built *before* the swap; the swap
is one reference assignment, and each request keeps the model it started with, so in-flight
requests finish on the old session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from lusaug.config import ServeParams
from lusaug.serving.batching import MicroBatcher, proba_chunked
from lusaug.serving.preprocess import (
    BadInput,
    ImageLimits,
    VideoSampling,
    decode_image,
    decode_video,
)
from lusaug.serving.session import ModelSource, OnnxClassifier, current_version, resolve_model

logger = logging.getLogger(__name__)
LOCAL_CLIENTS = {"127.0.0.1", "::1", "localhost", "testclient"}
RAW_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "video/mp4": ".mp4",
    "video/x-msvideo": ".avi",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/webm": ".webm",
}
INLINE_DECODE_BYTES = 256 * 1024  # smaller image uploads decode on the event loop (no thread hop)


@dataclass(frozen=True)
class LoadedModel:
    source: ModelSource
    clf: OnnxClassifier
    loaded_at: str


def load_model(uri: str, cache_dir: Path, threads: int) -> LoadedModel:
    """Resolve, open and smoke-test a model (all before it can be swapped in)."""
    source = resolve_model(uri, cache_dir)
    clf = OnnxClassifier(source.path, threads=threads)
    size = clf.info.image_size
    clf.proba(np.zeros((1, 1, size, size), np.float32))  # fail here, not on the first request
    return LoadedModel(source, clf, datetime.now(UTC).isoformat(timespec="seconds"))


class ServerState:
    """The served model (swapped atomically), the batcher and the reload machinery."""

    def __init__(
        self, uri: str, cfg: ServeParams, sampling: VideoSampling, cache_dir: Path | None = None
    ):
        self.uri = uri
        self.cfg = cfg
        self.sampling = sampling
        self.limits = ImageLimits(cfg.max_image_side, cfg.max_image_pixels)
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="lusaug-serve-"))
        self.current = load_model(uri, self.cache_dir, cfg.threads)
        self.batcher = (
            MicroBatcher(cfg.batch_window_ms, cfg.max_batch, cfg.inline_max_frames)
            if cfg.batch_window_ms > 0
            else None
        )
        self.reloads = 0
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> dict[str, Any]:
        """Swap in the version the alias points to now, if it moved."""
        async with self._reload_lock:
            old = self.current
            latest = await run_in_threadpool(current_version, self.uri)
            if latest is None or latest == old.source.version:
                return {"reloaded": False, "version": old.source.version}
            new = await run_in_threadpool(load_model, self.uri, self.cache_dir, self.cfg.threads)
            self.current = new  # atomic: requests already running keep `old`
            self.reloads += 1
            logger.info(
                "reloaded %s: version %s -> %s", self.uri, old.source.version, new.source.version
            )
            return {
                "reloaded": True,
                "version": new.source.version,
                "previous": old.source.version,
            }

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reload_poll_s)
            try:
                await self.reload()
            except Exception:  # registry unreachable: keep serving the current model
                logger.exception(
                    "model reload check failed; still serving %s", self.current.source.version
                )


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed)."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except self._TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        mb = self.max_bytes / 2**20
        response = JSONResponse(
            {"detail": f"request body over the {mb:g} MB limit"}, status_code=413
        )
        await response({"type": "http"}, None, send)


def _is_video(name: str, content_type: str, video_types: list[str]) -> bool:
    return Path(name).suffix.lower() in video_types or content_type.startswith("video/")


def _probs_dict(classes: list[str], p: np.ndarray) -> dict[str, Any]:
    return {
        "label": classes[int(p.argmax())],
        "prob": float(p.max()),
        "probs": {c: float(v) for c, v in zip(classes, p)},
    }


def create_app(
    uri: str, cfg: ServeParams, sampling: VideoSampling, cache_dir: Path | None = None
) -> FastAPI:
    """Build the app; the model is loaded now, so a bad ``uri`` fails before anything binds."""
    state = ServerState(uri, cfg, sampling, cache_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.batcher is not None:
            state.batcher.start()
        poller = None
        if cfg.reload_poll_s > 0 and state.current.source.alias:
            poller = asyncio.get_running_loop().create_task(state.poll(), name="model-poller")
        yield
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if state.batcher is not None:
            await state.batcher.stop()

    app = FastAPI(title="lusaug classifier", version="1", lifespan=lifespan)
    app.state.lusaug = state
    app.add_middleware(BodySizeLimit, max_bytes=int(cfg.max_request_mb * 2**20))

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": state.current.source.version}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        m = state.current
        info = m.clf.info
        return {
            "name": m.source.name or m.source.path.name,
            "version": m.source.version,
            "alias": m.source.alias,
            "uri": m.source.uri,
            "classes": info.classes,
            "input_size": [1, info.image_size, info.image_size],
            "image_size": info.image_size,
            "mean": info.mean,
            "std": info.std,
            "onnx_sha256": info.sha256,
            "onnx_metadata": info.metadata,
            "loaded_at": m.loaded_at,
            "reloads": state.reloads,
            "micro_batching": {
                "window_ms": cfg.batch_window_ms,
                "max_batch": cfg.max_batch,
                "batches": state.batcher.batches if state.batcher else None,
                "inline": state.batcher.inline if state.batcher else None,
                "inline_max_frames": cfg.inline_max_frames,
            },
        }

    @app.post("/reload")
    async def reload(request: Request) -> dict[str, Any]:
        host = request.client.host if request.client else ""
        if host not in LOCAL_CLIENTS:
            return JSONResponse(
                {"detail": "reload is allowed from localhost only"}, status_code=403
            )
        return await state.reload()

    async def read_files(request: Request) -> list[tuple[str, str, bytes]]:
        """(name, content type, bytes) of every uploaded file.

        Multipart ``files`` parts, or a raw body sent as ``Content-Type: image/png|jpeg`` or
        ``video/...`` (one file, no multipart parsing: the cheapest way to send one frame).
        """
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("image/", "video/")):
            mime = ctype.split(";")[0].strip()
            name = request.query_params.get("filename") or "body" + RAW_SUFFIXES.get(mime, "")
            return [(name, mime, await request.body())]
        if not ctype.startswith("multipart/form-data"):
            raise BadInput(
                "send multipart/form-data `files` parts, or one image/video as the raw "
                "body with its Content-Type",
                status=415,
            )
        try:
            form = await request.form(max_files=cfg.max_files, max_fields=cfg.max_files)
        except StarletteHTTPException as exc:
            raise BadInput(
                f"bad multipart body: {exc.detail} (at most {cfg.max_files} files)", 400
            ) from exc
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        return [
            (u.filename or f"file {i}", u.content_type or "", await u.read())
            for i, u in enumerate(uploads)
        ]

    async def parse(request: Request) -> tuple[LoadedModel, np.ndarray, dict[str, Any]]:
        """Request -> (the model this request runs on, its input batch, response skeleton)."""
        files = await read_files(request)
        if not files:
            raise BadInput("no files: send images (or one video) as multipart `files`", status=400)
        model = state.current  # this request runs on this model even if a reload happens
        videos = [f for f in files if _is_video(f[0], f[1], cfg.video_types)]
        if videos:
            if len(files) > 1:
                raise BadInput("send one video per request, without other files", status=400)
            name, _, data = videos[0]
            suffix = Path(name).suffix.lower()
            if suffix not in cfg.video_types:
                raise BadInput(
                    f"{name}: unsupported video type (accepted: {cfg.video_types})", 415
                )
            frames = await run_in_threadpool(
                decode_video, data, suffix, state.sampling, state.limits, name
            )
            x = await run_in_threadpool(model.clf.frames_to_input, list(frames), True)
            return model, x, {"video": {"file": name}}

        def prepare() -> np.ndarray:
            frames = [decode_image(data, state.limits, name) for name, _, data in files]
            return model.clf.frames_to_input(frames)

        # Small frames decode in ~0.1 ms: cheaper inline than a hop to the thread pool.
        small = sum(len(f[2]) for f in files) <= INLINE_DECODE_BYTES
        x = prepare() if small else await run_in_threadpool(prepare)
        return model, x, {"files": [f[0] for f in files]}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        batcher = state.batcher
        if batcher is not None:
            batcher.announce()  # the batcher may wait for this request while it decodes
        submitted = False
        try:
            model, x, skeleton = await parse(request)
            if batcher is not None:
                submitted = True
                probs = await batcher.submit(model.clf, x)
            else:
                probs = await run_in_threadpool(proba_chunked, model.clf, x, cfg.max_batch)
        finally:
            if batcher is not None and not submitted:
                batcher.withdraw()
        classes = model.clf.info.classes
        if "video" in skeleton:
            result: dict[str, Any] = {
                "video": {
                    **skeleton["video"],
                    "frames": len(probs),
                    **_probs_dict(classes, probs.mean(axis=0)),
                },  # mean-probability vote
                "predictions": [
                    {"frame": i, **_probs_dict(classes, p)} for i, p in enumerate(probs)
                ],
            }
        else:
            result = {
                "predictions": [
                    {"file": n, **_probs_dict(classes, p)}
                    for n, p in zip(skeleton["files"], probs)
                ]
            }
        result["model"] = {
            "name": model.source.name,
            "version": model.source.version,
            "alias": model.source.alias,
            "onnx_sha256": model.clf.info.sha256,
        }
        result["classes"] = classes
        result["elapsed_ms"] = round(1000 * (time.perf_counter() - t0), 2)
        return JSONResponse(result)  # plain dict of str/float: skip FastAPI's jsonable_encoder

    return app
