"""``GET /metrics``: Prometheus text exposition of the server's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lusaug.serving.routes import server_state

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Requests, latency, batch sizes, refusals, reloads and the model being served."""
    state = server_state(request)
    state.metrics.inflight.set(state.budget.in_use)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
