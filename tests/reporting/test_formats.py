"""The number formats the reports share (lusaug.core.markdown) and the verbatim block."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lusaug.core.markdown import (
    Doc,
    fixed,
    interval,
    pct,
    plural,
    render_html,
    render_markdown,
    signed_pct,
)


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.1234, "12.3"), (-0.0001, "0.0"), (None, "n/a"), (math.nan, "n/a"), (True, "n/a")],
)
def test_pct(x, text):
    assert pct(x) == text


def test_signed_and_intervals():
    assert [signed_pct(x) for x in (0.012, -0.005, 0.0, -0.0004)] == ["+1.2", "-0.5", "0.0", "0.0"]
    assert interval(0.5, 0.25, 0.75) == "50.0 [25.0, 75.0]"
    assert interval(0.05, -0.01, 0.1, signed=True) == "+5.0 [-1.0, 10.0]"
    assert interval(0.5, None, 0.75) == "50.0"
    assert fixed(0.004567, 4) == "0.0046" and fixed(None, 2) == "n/a"
    assert [plural(1, "patient"), plural(2, "patient")] == ["1 patient", "2 patients"]


def test_tables_escape_pipes_and_raw_blocks_stay_verbatim():
    doc = Doc()
    doc.table(["a", "b"], [["x|y", "1"]])
    doc.raw("Hand-written | *kept*\n\n- as is\n")
    md = render_markdown(doc, Path("r.md"))
    assert "| x\\|y | 1 |" in md and "Hand-written | *kept*\n\n- as is\n" in md
    assert "<pre>Hand-written | *kept*" in render_html(doc, "t")
