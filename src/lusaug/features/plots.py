"""The controls table as a heat-table: controls down, measures across, pass/fail in colour.

Green = passed, red = failed, grey = not assessable; each cell prints the value. A cell whose
outcome is the wrong one (a control let through, the real patient rejected) is outlined in
black. Column titles say whether the measure is usable as a target in this fold.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from lusaug.features.protocol import ControlsTable

COLOURS = {True: "#8fd19e", False: "#f1948a", None: "#d5d8dc"}


def controls_figure(table: ControlsTable, title: str = "controls") -> plt.Figure:
    """One figure of ``table`` (see the module docstring)."""
    controls = list(dict.fromkeys(r["control"] for r in table.rows))
    measures = list(dict.fromkeys(r["measure"] for r in table.rows))
    cell = {(r["control"], r["measure"]): r for r in table.rows}
    fig, ax = plt.subplots(figsize=(1.35 * len(measures) + 2.0, 0.6 * len(controls) + 1.6))
    for i, c in enumerate(controls):
        for j, m in enumerate(measures):
            r = cell.get((c, m))
            passed = None if r is None else r["passed"]
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=COLOURS[passed], edgecolor="white"))
            if r is not None and r["as_expected"] is False:
                ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False, lw=2))
            value = None if r is None else r["value"]
            text = "n/a" if value is None else f"{value:.3g}"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, len(measures))
    ax.set_ylim(len(controls), 0)
    ax.set_xticks(np.arange(len(measures)) + 0.5)
    ax.set_xticklabels(
        [f"{m}\n{'TARGET' if table.usable.get(m) else 'not a target'}" for m in measures],
        rotation=35,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(np.arange(len(controls)) + 0.5)
    ax.set_yticklabels(controls, fontsize=9)
    ax.set_title(f"{title}: green passed, red failed, outlined = wrong outcome", fontsize=9)
    ax.tick_params(length=0)
    fig.tight_layout()
    return fig
