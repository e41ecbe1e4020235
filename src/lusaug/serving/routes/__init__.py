"""The server's routes, one APIRouter per concern; :mod:`lusaug.serving.app` assembles them."""

from __future__ import annotations

from fastapi import Request

from lusaug.serving.state import ServerState


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app that received ``request``."""
    return request.app.state.lusaug
