"""``GET /health``, ``/health/live``, ``/health/ready`` and ``/metadata``.

``/health/live`` answers as long as the process serves HTTP (a Kubernetes liveness probe);
``/health/ready`` only once a model is loaded, smoke-tested and the batcher runs (readiness:
send traffic). ``/health`` is the old combined check and stays.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lusaug.serving.routes import server_state
from lusaug.serving.schemas import (
    HealthResponse,
    Limits,
    LiveResponse,
    MetadataResponse,
    MicroBatching,
    ModelSummary,
    ReadyResponse,
)

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> HealthResponse:
    """Up, with the version served."""
    return HealthResponse(status="ok", version=server_state(request).current.version)


@router.get("/health/live")
async def live() -> LiveResponse:
    """The process is up and answering HTTP."""
    return LiveResponse(status="alive")


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "model not ready yet"}},
)
async def ready(request: Request) -> JSONResponse:
    """A model is loaded, has passed its smoke test, and requests are being taken."""
    state = server_state(request)
    m = state.current
    body = ReadyResponse(
        status="ready" if state.ready else "starting",
        model=ModelSummary(name=m.name, version=m.version, alias=m.source.alias),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if state.ready else 503)


@router.get("/metadata")
async def metadata(request: Request) -> MetadataResponse:
    """The served model, its preprocessing, the limits and the micro-batching counters."""
    state = server_state(request)
    m, cfg = state.current, state.cfg
    info = m.clf.info
    return MetadataResponse(
        name=m.name,
        version=m.version,
        alias=m.source.alias,
        uri=m.source.uri,
        classes=info.classes,
        input_size=[1, info.image_size, info.image_size],
        image_size=info.image_size,
        mean=info.mean,
        std=info.std,
        onnx_sha256=info.sha256,
        onnx_metadata=info.metadata,
        loaded_at=m.loaded_at,
        reloads=state.reloads,
        last_reload_error=state.last_reload_error,
        limits=Limits(
            max_request_mb=cfg.max_request_mb,
            max_files=cfg.max_files,
            max_image_side=cfg.max_image_side,
            max_image_pixels=cfg.max_image_pixels,
            min_side=state.image_limits.min_side,
            max_request_pixels=state.limits.max_request_pixels,
            max_inflight_mb=state.limits.max_inflight_mb,
            inflight_peak_mb=round(state.budget.peak / 2**20, 2),
            refused_busy=state.budget.refused,
        ),
        micro_batching=MicroBatching(
            window_ms=cfg.batch_window_ms,
            max_batch=cfg.max_batch,
            batches=state.batcher.batches if state.batcher else None,
            inline=state.batcher.inline if state.batcher else None,
            inline_max_frames=cfg.inline_max_frames,
        ),
    )
