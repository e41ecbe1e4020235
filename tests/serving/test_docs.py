"""The API docs work offline: /docs and everything it loads come from the server itself."""

from __future__ import annotations

import re
import urllib.parse

import httpx

ASSET_REF = re.compile(r"""(?:src|href)="([^"]+)"|url:\s*'([^']+)'""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


def _local(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def test_docs_page_and_its_assets_are_served_locally(server):
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert not re.search(r"https?://|//cdn", page.text), "the page names an outside URL"
    refs = [a or b for a, b in ASSET_REF.findall(page.text)]
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(refs)
    assert "/openapi.json" in refs and all(_local(u) for u in refs), refs
    assert '"validatorUrl": null' in page.text  # no badge from the public online validator
    for ref in refs:
        r = httpx.get(server.url + ref)
        assert r.status_code == 200 and r.content, ref
        if ref.endswith(".css"):  # what a stylesheet loads: inline data only, or this server
            loaded = CSS_URL.findall(r.text)
            assert all(u.startswith("data:") or _local(u) for u in loaded), loaded
    assert httpx.get(f"{server.url}/redoc").status_code == 404  # no CDN-backed page left


def test_docs_render_the_operations_in_a_browser_with_the_network_cut_off(server):
    """Chromium may reach this server only; /docs still lists every operation."""
    from tests.team.browser import CHROMIUM_ARGS, chromium_path

    executable = chromium_path()  # skips, naming the install, when there is no Chromium
    from playwright.sync_api import sync_playwright

    origin = urllib.parse.urlsplit(server.url)
    blocked: list[str] = []

    def route(r) -> None:
        url = urllib.parse.urlsplit(r.request.url)
        if (url.scheme, url.netloc) == (origin.scheme, origin.netloc) or url.scheme == "data":
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", route)
            page = context.new_page()
            page.goto(f"{server.url}/docs")
            page.locator(".opblock").first.wait_for(timeout=60_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/predict", "/health", "/metadata", "/metrics", "/reload"} <= {
                t.strip().replace("\u200b", "") for t in paths
            }, paths
            page.get_by_text("PredictResponse", exact=True).first.wait_for(timeout=30_000)
        finally:
            browser.close()
    assert blocked == [], blocked
