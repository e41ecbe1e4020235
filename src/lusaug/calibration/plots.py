"""Figures of the calibration: the power curve (with the MDD) and the type-I rates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lusaug.calibration.stats import Rate, power_curve, type_one_rates
from lusaug.models.plots import save

POWER_CURVE_PNG = "calibration_power_curve.png"
TYPE_ONE_PNG = "calibration_type_one.png"


def power_curve_figure(curve: pd.DataFrame, alpha: float, target_power: float) -> Figure:
    """Power (with Monte Carlo intervals) and the median reported MDD (with its IQR) against
    the number of rare-class patients, one line per oracle comparison."""
    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for name, part in curve.groupby("name", sort=True):
        x = part["n_rare_patients"].to_numpy()
        y = part["power"].to_numpy()
        err = np.vstack([y - part["lo"].to_numpy(), part["hi"].to_numpy() - y])
        ax_p.errorbar(x, y, yerr=err, marker="o", capsize=3, label=str(name))
        med = part["mdd_median"].to_numpy()
        iqr = np.vstack([med - part["mdd_q1"].to_numpy(), part["mdd_q3"].to_numpy() - med])
        ax_m.errorbar(x, med, yerr=iqr, marker="s", capsize=3, label=str(name))
    ax_p.axhline(target_power, color="grey", ls="--", lw=1, label=f"power {target_power:g}")
    ax_p.axhline(alpha, color="red", ls=":", lw=1, label=f"alpha {alpha:g}")
    for ax in (ax_p, ax_m):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rare-class patients")
        ticks = sorted(set(curve["n_rare_patients"]))
        if ticks:
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.grid(alpha=0.3)
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("power (share of 'helps'), MC interval")
    ax_p.set_title("oracle vs its matched control")
    ax_m.set_ylabel("reported MDD (median, IQR)")
    ax_m.set_title("minimum detectable difference")
    ax_p.legend(fontsize=7)
    fig.tight_layout()
    return fig


def type_one_figure(rates: Mapping[str, Rate], alpha: float) -> Figure:
    """Each null comparison's share of "helps" with its Monte Carlo interval, against alpha."""
    names = list(rates)
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(names), 2) + 1.2))
    y = np.arange(len(names))
    vals = np.array([rates[n].rate for n in names], dtype=float)
    lo = np.array([rates[n].lo for n in names], dtype=float)
    hi = np.array([rates[n].hi for n in names], dtype=float)
    ax.errorbar(vals, y, xerr=np.vstack([vals - lo, hi - vals]), fmt="o", capsize=3)
    for yi, n in zip(y, names, strict=True):
        label = f"{rates[n].k}/{rates[n].n}"
        ax.annotate(label, (vals[yi], yi), xytext=(6, 4), textcoords="offset points", fontsize=7)
    ax.axvline(alpha, color="red", ls="--", lw=1, label=f"alpha {alpha:g}")
    ax.set_yticks(y, names)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("type-I rate (share of 'helps'), MC interval")
    ax.set_title("null generator and placebo")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def write_plots(
    records: Iterable[Mapping[str, Any]],
    out_dir: Path | str,
    alpha: float,
    target_power: float,
    ci: float = 0.95,
    method: str = "exact",
) -> dict[str, Path]:
    """Write the power curve and the type-I figure into ``out_dir`` (each file atomically)."""
    records = list(records)
    out_dir = Path(out_dir)
    curve = power_curve(records, "oracle", ci, method)
    rates = type_one_rates(records, ci, method)
    curve_fig = power_curve_figure(curve, alpha, target_power)
    return {
        "power_curve": save(curve_fig, out_dir / POWER_CURVE_PNG),
        "type_one": save(type_one_figure(rates, alpha), out_dir / TYPE_ONE_PNG),
    }
