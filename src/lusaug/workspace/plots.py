"""``dvc plots show`` offline: an HTML template with Vega, Vega-Lite and vega-embed inlined.

DVC's own page loads the three libraries from a CDN, so without a network its interactive plots
are blank. ``dvc plots show --html-template FILE`` (or ``plots.html_template`` in
``.dvc/config``, which this repository sets) fills a page of ours instead: it has
``{plot_divs}`` but no ``{scripts}``, so DVC adds no CDN ``<script>``, and it carries the
libraries' code as vl-convert-python bundles them (the bundle altair's ``inline`` HTML uses).
Vega-Lite 5 because DVC's plot templates are Vega-Lite 5 specs. The file is committed
(``.dvc/plots_offline.html``, ~0.9 MB) so a fresh clone renders offline with nothing to build;
``lusaug plots-template`` writes it again after vl-convert-python changes (a test checks it is
current).
"""

from __future__ import annotations

from pathlib import Path

from lusaug.core.utils import write_text

TEMPLATE = Path(".dvc/plots_offline.html")  # .dvc/config: [plots] html_template = its name
VEGA_LITE = "5.21"  # the newest Vega-Lite 5 vl-convert bundles (DVC's specs are Vega-Lite 5)
PLACEHOLDER = "{plot_divs}"  # DVC's; "{scripts}" is left out on purpose (its CDN tags)


def bundle_versions() -> str:
    """The libraries the installed vl-convert-python bundles, as written in the template."""
    import vl_convert

    return (
        f"vega {vl_convert.get_vega_version()}, vega-lite {VEGA_LITE}, vega-embed "
        f"{vl_convert.get_vega_embed_version()} (vl-convert-python {vl_convert.__version__})"
    )


def render_template() -> str:
    """The page DVC fills: the bundled libraries in one inline <script>, then the plots."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    # DVC fills its placeholders with str.replace; the bundle must not contain them, nor end
    # the inline script early
    for forbidden in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
        if forbidden in bundle.lower():
            raise RuntimeError(f"the vega bundle contains {forbidden!r}: cannot inline it")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            "<head>",
            "    {refresh_tag}",
            '    <meta charset="utf-8">',
            "    <title>DVC plots (offline)</title>",
            f"    <!-- lusaug plots-template: {bundle_versions()}; no CDN -->",
            '    <script type="text/javascript">',
            "(function () {  // the bundle's own names stay out of the page's global scope",
            bundle,
            "})();",
            "    </script>",
            "    <style>",
            "        table { border-spacing: 15px; }",
            "    </style>",
            "</head>",
            "<body>",
            f"    {PLACEHOLDER}",
            "</body>",
            "</html>",
            "",
        ]
    )


def template_versions(root: Path) -> str:
    """The versions line of the committed template ('' when there is none)."""
    path = root / TEMPLATE
    if not path.is_file():
        return ""
    with path.open() as fh:
        for line in fh:
            if "lusaug plots-template:" in line:
                return line.split("lusaug plots-template:", 1)[1].split("; no CDN")[0].strip()
            if "<script" in line:
                break
    return ""


def write_template(root: Path) -> Path:
    """Write ``TEMPLATE`` under ``root``; returns its path."""
    path = root / TEMPLATE
    write_text(path, render_template())
    path.chmod(0o644)  # a temp file's 0600 otherwise; git and every user read it
    return path
