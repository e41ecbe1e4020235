"""The evaluate stage's figures and the CSV sources of ``dvc plots`` (PNG: they render offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from lusaug.core.config import RARE_ENDPOINTS
from lusaug.models import plots
from lusaug.models.comparison import Findings
from lusaug.models.oof import RunOOF
from lusaug.models.run_files import write_csv

SUBDIRS = ("confusion", "curves", "figures")


def _fresh(plots_dir: Path) -> Path:
    for sub in SUBDIRS:
        folder = plots_dir / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():  # runs no longer planned must not linger in the plots
            if old.is_file():
                old.unlink()
    return plots_dir / "figures"


def write_plots(
    plots_dir: Path | str,
    runs: list[RunOOF],
    y: np.ndarray,
    settings: dict[tuple[str, str], list[RunOOF]],
    found: Findings,
    ci: float,
) -> dict[str, Path]:
    """Per-run confusion CSVs and curves, the summary figures; returns the figure paths."""
    agg, rare_rows = found.agg, found.rare_rows
    classes, target = found.classes, found.target
    plots_dir = Path(plots_dir)
    figs = _fresh(plots_dir)
    labels = list(range(len(classes)))
    cms: dict[str, np.ndarray] = {}
    for r in runs:
        if not r.available:
            continue
        cm = confusion_matrix(y, r.test_prob.argmax(1), labels=labels)
        cms[r.name] = cm
        pairs = [
            (classes[i], classes[j]) for i in labels for j in labels for _ in range(int(cm[i, j]))
        ]
        write_csv(
            pd.DataFrame(pairs, columns=["actual", "predicted"]),
            plots_dir / "confusion" / f"{r.name}.csv",
        )
        curves = pd.concat(
            [h.assign(fold=k) for k, h in sorted(r.history.items())], ignore_index=True
        )
        cols = [
            c for c in ("fold", "epoch", "train_loss", "val_loss", "val_macro_f1") if c in curves
        ]
        write_csv(curves[cols], plots_dir / "curves" / f"{r.name}.csv")
    out: dict[str, Path] = {}
    grid = {
        f"{s} / {a}": sum(cms[r.name] for r in rs)
        for (s, a), rs in settings.items()
        if all(r.available for r in rs)
    }
    if grid:
        out["confusion_grid"] = plots.save(
            plots.confusion_grid(grid, classes), figs / "confusion_grid.png"
        )
    rows = [
        {
            "setting": f"{e['strategy']} / {e['architecture']}",
            "class": c,
            "value": e[f"recall_{c}"]["value"],
            "lo": e[f"recall_{c}"]["lo"],
            "hi": e[f"recall_{c}"]["hi"],
        }
        for e in agg.values()
        if "unavailable" not in e
        for c in classes
    ]
    if rows:
        out["recall_bars"] = plots.save(
            plots.recall_bars(pd.DataFrame(rows), classes, ci), figs / "recall_bars.png"
        )
    histories = {
        f"{r.name} f{k}": h for r in runs if r.available for k, h in sorted(r.history.items())
    }
    out["curves_f1"] = plots.save(
        plots.curves_figure(histories, "val_macro_f1", "validation macro-F1"),
        figs / "curves_val_macro_f1.png",
    )
    comparisons = found.verdicts["comparisons"]
    if comparisons:
        for metric in ("f1_macro", *RARE_ENDPOINTS):
            rare = metric in RARE_ENDPOINTS
            table = pd.DataFrame(
                [
                    {
                        "setting": name,
                        "diff": d["estimate"],
                        "lo": d["interval"]["lo"],
                        "hi": d["interval"]["hi"],
                    }
                    for name, c in comparisons.items()
                    for d in [c["rare"][metric] if rare else c["population"][metric]]
                ]
            )
            label = f"{metric}_{target}" if rare else metric
            out[f"diff_{label}"] = plots.save(
                plots.difference_figure(table, label, ci), figs / f"differences_{label}.png"
            )
    if rare_rows:
        out["rare_patients"] = plots.save(
            plots.patient_recall_figure(rare_rows, target), figs / "rare_patient_recall.png"
        )
    return out
