"""``POST /reload``: check the alias now and swap if it moved (from this machine only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lusaug.serving.routes import server_state
from lusaug.serving.state import ReloadFailed

router = APIRouter(tags=["admin"])
# Peers allowed to trigger a reload: loopback, and Starlette's in-process test client.
LOCAL_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


@router.post(
    "/reload",
    responses={
        403: {"description": "not from this machine"},
        409: {"description": "the alias points at a version that cannot serve"},
        503: {"description": "the registry cannot be reached"},
    },
)
async def reload(request: Request) -> Any:
    """Swap in the version the alias points to now; the old model stays on any failure."""
    host = request.client.host if request.client else ""
    if host not in LOCAL_CLIENTS:
        return JSONResponse(
            {"detail": f"reload is allowed from localhost only (you are {host or 'unknown'})"},
            status_code=403,
        )
    try:
        return await server_state(request).reload()
    except ReloadFailed as exc:
        return JSONResponse({"detail": str(exc), "reloaded": False}, status_code=exc.status)
