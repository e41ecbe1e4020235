"""A real Chromium (Debian's ``chromium``) driven by Playwright, and the MLflow UI pages we check.

Playwright's own browser download is not reachable here, so it drives the system browser through
``executable_path``. Without the background-networking flags Chromium keeps trying Google's
hosts, which this machine's closed network refuses.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "apt-get install -y chromium && pip install playwright (README, For a team)"
UI_TIMEOUT_MS = 90_000  # the MLflow UI is a single-page app: its first load takes seconds
VIEWPORT = {"width": 1600, "height": 900}
ML_WORKFLOW = "workflowType=machine_learning"  # the UI's "Model training" switch


def chromium_path() -> str:
    """The system Chromium, or ``pytest.skip`` naming how to install it."""
    found = os.environ.get("LUSAUG_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
    )
    if not found:
        pytest.skip(f"no Chromium installed ({INSTALL_HINT})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(f"playwright is not installed ({INSTALL_HINT})")
    return found


@contextmanager
def browser_page(offline: bool = False):
    """A fresh page in headless Chromium; ``offline`` aborts every non-file request."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            blocked: list[str] = []
            if offline:

                def route(r):
                    if r.request.url.startswith(("file:", "data:", "blob:")):
                        return r.continue_()
                    blocked.append(r.request.url)
                    return r.abort()

                context.route("**/*", route)
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.blocked = blocked  # what an offline page tried to fetch
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    """Save a screenshot into ``$LUSAUG_SCREENSHOTS`` (e.g. docs/img) when it is set."""
    folder = os.environ.get("LUSAUG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def images_loaded(page) -> list[dict]:
    """Every <img>: its source, whether it decoded, and its rendered size."""
    return page.evaluate(
        """() => [...document.images].map(i => ({src: i.getAttribute('src'),
            loaded: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width,
            height: i.getBoundingClientRect().height}))"""
    )


def close_assistant(page) -> None:
    """MLflow 3.17 opens an "Assistant" side panel; close it so the table gets the width."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()


def open_runs(page, base: str, experiment_id: str, search: str, charts: bool = False) -> None:
    """The experiment's runs filtered by ``search`` (Model training view): the table, or with
    ``charts`` the chart view (one chart per metric, a bar per visible run)."""
    query = urllib.parse.quote(search)
    mode = "&compareRunsMode=CHART" if charts else ""
    page.goto(
        f"{base}/#/experiments/{experiment_id}/runs?{ML_WORKFLOW}&searchFilter={query}{mode}"
    )
    page.get_by_text("matching runs").wait_for()
    close_assistant(page)


def hide_run(page, run_name: str) -> None:
    """The eye toggle of a run: hidden runs drop out of the charts."""
    row(page, run_name).locator("label:has(input.is-visibility-toggle-checkbox)").first.click()


def show_tag_column(page, tag: str) -> None:
    """Columns -> search ``tag`` -> tick it under Tags."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(tag)
    tree = page.get_by_test_id("column-selector-tree")
    # whole titles only (the search highlight is a <strong> inside one); Tags is the last group
    leaf = tree.locator(".du-bois-light-tree-title").filter(
        has_text=re.compile(rf"^{re.escape(tag)}$")
    )
    tags_node = tree.locator(".du-bois-light-tree-treenode", has_text="Tags")
    tags_node.first.wait_for()
    if not leaf.count():  # the Tags group can render collapsed
        tags_node.first.locator(".du-bois-light-tree-switcher").click()
    leaf.last.click()
    page.keyboard.press("Escape")


def expand_parents(page) -> None:
    """Unfold the parent runs (``train-matrix-<key>``) so their children show."""
    expanders = page.locator("[data-component-id$='runnamecellrenderer.tsx_46']")
    for i in range(expanders.count()):
        expanders.nth(i).click()


def row(page, run_name: str):
    """Every part of the run's table row (ag-grid splits a row into pinned and scrolled parts)."""
    named = page.locator(".ag-row", has=page.get_by_text(run_name, exact=True)).first
    return page.locator(f".ag-row[row-id='{named.get_attribute('row-id')}']")


def cell(page, run_name: str, col_id: str) -> str:
    return row(page, run_name).locator(f"[col-id='{col_id}']").first.inner_text().strip()
