"""A tiny document model rendered to Markdown and to self-contained HTML (images inlined), and
the number formats of every Markdown report.

The comparison report is written twice from the same blocks: ``comparison.md`` (images linked
relative to the report) and ``comparison.html`` (images embedded as base64, so it opens offline
and can be attached to MLflow as one file). The study write-up (``lusaug report``) uses the same
blocks and formats.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusaug.core.utils import write_text

NA = "n/a"  # how every report writes an absent or undefined number


def finite(x: Any) -> bool:
    """A real number that is not NaN or infinite (bools and None are not numbers here)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal (``n/a`` when absent, never ``-0.0``)."""
    if not finite(x):
        return NA
    s = f"{100 * x:.1f}"
    return "0.0" if s == "-0.0" else s


def signed_pct(x: Any) -> str:
    """A difference of fractions in percentage points, signed (``+1.2``, ``-0.5``, ``0.0``)."""
    if not finite(x):
        return NA
    s = f"{100 * x:+.1f}"
    return "0.0" if s in ("+0.0", "-0.0") else s


def interval(value: Any, lo: Any, hi: Any, *, signed: bool = False) -> str:
    """``value [lo, hi]`` in percent (the value signed for differences); no brackets when a
    bound is absent."""
    head = signed_pct(value) if signed else pct(value)
    if not (finite(lo) and finite(hi)):
        return head
    return f"{head} [{pct(lo)}, {pct(hi)}]"


def fixed(x: Any, digits: int) -> str:
    """A number with ``digits`` decimals (``n/a`` when absent)."""
    return f"{x:.{digits}f}" if finite(x) else NA


def plural(n: int, noun: str) -> str:
    """``1 patient``, ``2 patients``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", header, rows))

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", Path(path), alt))

    def raw(self, text: str) -> None:
        """Markdown included verbatim (a hand-written conclusion); HTML shows it as text."""
        self.blocks.append(("raw", text))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc, report_path: Path) -> str:
    out: list[str] = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}\n")
        elif kind == "p":
            out.append(f"{block[1]}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]) + "\n")
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
            out.append("")
        elif kind == "img":
            rel = os.path.relpath(block[1].resolve(), report_path.resolve().parent)
            out.append(f"![{block[2]}]({Path(rel).as_posix()})\n")
        elif kind == "raw":
            out.append(block[1].rstrip("\n") + "\n")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%}code{background:#f3f3f3}"""


def render_html(doc: Doc, title: str) -> str:
    body: list[str] = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "raw":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "ul":
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block[1])
            body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            path: Path = block[1]
            if path.exists():
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(
                    f'<p><img alt="{html.escape(block[2])}" '
                    f'src="data:image/png;base64,{data}"></p>'
                )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(doc: Doc, md_path: Path | str, title: str) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.html`` side by side; returns both paths."""
    md_path = Path(md_path)
    html_path = md_path.with_suffix(".html")
    write_text(md_path, render_markdown(doc, md_path))
    write_text(html_path, render_html(doc, title))
    return md_path, html_path
