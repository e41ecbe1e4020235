"""``GET /docs``: the interactive API docs (Swagger UI), served by this server alone.

FastAPI's own /docs page loads Swagger UI from a CDN, a blank page offline. This page loads the
JavaScript, CSS and icon from ``/docs/assets``, the files of the ``swagger-ui-bundle-v2``
package (Swagger UI 5, which reads OpenAPI 3.1), as FastAPI's "self-hosting" recipe does; the
online validator badge is off, so the page fetches nothing from elsewhere.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
# Swagger UI would otherwise show a badge fetched from the public online validator.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

router = APIRouter()


@router.get(DOCS_URL, include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


def mount_assets(app: FastAPI) -> None:
    """Serve Swagger UI's files under :data:`ASSETS_URL`."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
