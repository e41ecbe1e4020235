"""``POST /reload``: check the alias now and swap if it moved (from this machine only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lusaug.serving.routes import server_state
from lusaug.serving.schemas import ReloadError, ReloadResponse
from lusaug.serving.state import ReloadFailed

router = APIRouter(tags=["admin"])
# Peers allowed to trigger a reload: loopback, and Starlette's in-process test client.
LOCAL_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        403: {"model": ReloadError, "description": "not from this machine"},
        409: {
            "model": ReloadError,
            "description": "the alias points at a version that cannot serve",
        },
        503: {"model": ReloadError, "description": "the registry cannot be reached"},
    },
)
async def reload(request: Request) -> ReloadResponse | JSONResponse:
    """Swap in the version the alias points to now; the old model stays on any failure."""
    host = request.client.host if request.client else ""
    if host not in LOCAL_CLIENTS:
        detail = f"reload is allowed from localhost only (you are {host or 'unknown'})"
        return JSONResponse(ReloadError(detail=detail).model_dump(), status_code=403)
    try:
        return ReloadResponse(**await server_state(request).reload())
    except ReloadFailed as exc:
        return JSONResponse(ReloadError(detail=str(exc)).model_dump(), status_code=exc.status)
