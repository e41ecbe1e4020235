"""`dvc plots show` renders offline: the committed template inlines Vega, Vega-Lite and
vega-embed, and .dvc/config makes DVC use it."""

from __future__ import annotations

import configparser
import re

import pytest

from lusaug.core.config import PROJ_ROOT
from lusaug.workspace.plots import PLACEHOLDER, TEMPLATE, bundle_versions, template_versions
from tests.pipelines.helpers import run
from tests.workspace.helpers import plots_repo

# what makes a page's markup load something: a script, image or frame by URL, a stylesheet
LOADS = re.compile(r"""<(?:script|img|iframe)[^>]*\bsrc=|<link[^>]*\bhref=|@import""")
SCRIPT = re.compile(r"<script([^>]*)>.*?</script>", re.DOTALL)


def _external_loads(html: str) -> list[str]:
    """What the markup loads by URL: script tags with src, then anything outside the inline
    scripts (their code is the libraries', e.g. an <img> in a tooltip template)."""
    found = [attrs for attrs in SCRIPT.findall(html) if "src=" in attrs]
    return found + LOADS.findall(SCRIPT.sub("", html))


def test_dvc_uses_the_committed_offline_template():
    config = configparser.ConfigParser()
    config.read(PROJ_ROOT / ".dvc/config")
    assert (PROJ_ROOT / ".dvc" / config["plots"]["html_template"]) == PROJ_ROOT / TEMPLATE
    text = (PROJ_ROOT / TEMPLATE).read_text()
    assert PLACEHOLDER in text and "{scripts}" not in text  # DVC adds no CDN <script> tags
    assert _external_loads(text) == []


def test_the_committed_template_is_from_the_installed_vl_convert():
    """`lusaug plots-template` writes it again when vl-convert-python moves."""
    assert template_versions(PROJ_ROOT) == bundle_versions()


@pytest.mark.slow  # dvc plots show, then Chromium
def test_dvc_plots_show_renders_with_the_network_cut_off(tmp_path):
    from tests.team.browser import browser_page

    repo = plots_repo(tmp_path / "repo")
    run(["dvc", "plots", "show", "-o", "page"], repo)
    html = (repo / "page/index.html").read_text()
    assert html.count("vegaEmbed('#") == 2
    assert _external_loads(html) == [] and "cdn.jsdelivr" not in html
    errors: list[str] = []
    with browser_page(offline=True) as page:  # skips, naming the install, without Chromium
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((repo / "page/index.html").as_uri())
        page.wait_for_selector(".vega-embed svg, .vega-embed canvas", timeout=60_000)
        drawn = page.evaluate(
            "() => document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length"
        )
        blocked = page.blocked
    assert drawn >= 2 and blocked == [] and errors == [], (drawn, blocked, errors)
