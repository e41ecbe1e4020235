"""The FastAPI inference server: ONNX Runtime, micro-batching, hot reload, bounded requests.

Endpoints (one router module each, under :mod:`lusaug.serving.routes`): ``POST /predict``
(multipart ``files``: any mix of images and videos, one result each; or a single image/video as
the raw body with its ``Content-Type``), ``GET /health``, ``/health/live``, ``/health/ready``,
``GET /metadata``, ``GET /metrics`` (Prometheus), ``POST /reload`` (from localhost only), and
``GET /docs`` (Swagger UI, served offline). Answers are the Pydantic models of
:mod:`lusaug.serving.schemas`. A refused request gets a 4xx JSON ``{"detail", "reason"}``
(503 with ``Retry-After`` when the server is busy; the status of each reason:
:mod:`lusaug.serving.faults`) and the server keeps serving; every response names the model
version and its intended use in its headers. Limits: :mod:`lusaug.serving.budget`; nothing from
a request is ever unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lusaug.core.config import ServeParams
from lusaug.export.model_input import BadInput
from lusaug.serving.budget import MIB, BodyLimit, ServeLimits
from lusaug.serving.faults import as_refused
from lusaug.serving.preprocess import VideoSampling
from lusaug.serving.prometheus import ResponseMeta
from lusaug.serving.routes import docs, health, metrics, predict, reload
from lusaug.serving.state import ServerState

ROUTERS = (predict.router, health.router, reload.router, metrics.router, docs.router)


def create_app(
    uri: str,
    cfg: ServeParams,
    sampling: VideoSampling,
    cache_dir: Path | None = None,
    *,
    limits: ServeLimits | None = None,
    min_side: int = 1,
) -> FastAPI:
    """Build the app; the model is loaded now, so a bad ``uri`` fails before anything binds.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or an .onnx path.
        cfg: the ``serve`` section.
        sampling: video sampling.
        cache_dir: download folder of registry versions (a temp dir by default).
        limits: request budgets (default: from ``cfg``, see :class:`ServeLimits`).
        min_side: shortest accepted image side (``frames.min_side``).
    """
    state = ServerState(uri, cfg, sampling, cache_dir, limits, min_side)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.batcher is not None:
            state.batcher.start()
        poller = None
        if cfg.reload_poll_s > 0 and state.current.source.alias:
            poller = asyncio.get_running_loop().create_task(state.poll(), name="model-poller")
        state.ready = True
        yield
        state.ready = False
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if state.batcher is not None:
            await state.batcher.stop()

    app = FastAPI(
        title="lusaug classifier",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their assets from a CDN: see routes/docs.py
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.lusaug = state
    for router in ROUTERS:
        app.include_router(router)
    docs.mount_assets(app)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        refused = as_refused(exc)
        state.metrics.refused.labels(refused.reason.value).inc()
        body = {"detail": str(refused), "reason": refused.reason.value}
        headers = getattr(refused, "headers", None)
        return JSONResponse(body, status_code=refused.status, headers=headers)

    def body_refused(reason) -> None:
        state.metrics.refused.labels(reason.value).inc()

    # Outermost first: every response (413s of the body cap included) gets headers + metrics.
    app.add_middleware(
        BodyLimit,
        max_bytes=int(cfg.max_request_mb * MIB),
        budget=state.budget,
        on_refused=body_refused,
    )
    # Metric route labels: the served paths, the docs' assets as one; the rest is "other".
    routes = {r.path for router in ROUTERS for r in router.routes} | {app.openapi_url}
    app.add_middleware(
        ResponseMeta,
        metrics=state.metrics,
        model=state.model_labels,
        routes=routes,
        prefixes=(docs.ASSETS_URL,),
    )
    return app
