"""Figures: copied next to the write-up, linked relative to it, shrunk under FIGURE_MAX_BYTES."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from lusaug.reporting.figures import FIGURE_MAX_BYTES, copy_figure
from tests.reporting.helpers import BIG_FIGURE, BIG_SIZE, build, png


def test_figures_copied_small_and_linked(cv_run):
    out, text = build(cv_run)
    img = out.parent / "img" / "study"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links
    for link in links:
        path = (out.parent / link).resolve()
        assert path.is_file() and img in path.parents and "plots/" not in link
        assert path.stat().st_size <= FIGURE_MAX_BYTES
    big = img / "evaluate" / BIG_FIGURE
    assert (cv_run / "plots/evaluate/figures" / BIG_FIGURE).stat().st_size > FIGURE_MAX_BYTES
    with Image.open(big) as im:
        assert im.width < BIG_SIZE[0] and im.height < BIG_SIZE[1]
    assert len(links) == len({*links})  # every figure once


def test_a_small_figure_is_copied_losslessly(tmp_path):
    src = tmp_path / "a.png"
    png(src)
    dst = copy_figure(src, tmp_path / "out" / "a.png")
    with Image.open(src) as a, Image.open(dst) as b:
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def test_an_absent_figure_is_none(tmp_path):
    assert copy_figure(tmp_path / "nope.png", tmp_path / "out.png") is None
    assert not (tmp_path / "out.png").exists()
