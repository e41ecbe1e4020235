"""What a study found, as the tuned file holds it, and the study's figures.

``params/tuned/fold-<k>.yaml`` has one section per tuned strategy: the class weights, the learning
rate, for ``synthetic_tuned-<G>`` the filter thresholds and the candidate files they keep, the
architecture the study trained, and the study's provenance. Everything in it is a function of the
study's finished trials (no timestamps, no counts of failed attempts), so the same inputs give the
same bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lusaug.core.utils import atomic_path
from lusaug.tuning.objective import TuneError
from lusaug.tuning.optuna_study import FINISHED

HEADER = (
    "# Written by the `tune` stage (one Optuna study per tuned strategy; params.yaml `tune`).\n"
    "# Read by class_weights_tuned and synthetic_tuned-<G>. Do not edit: re-run `dvc repro`.\n"
)
DIGITS = 6  # rounding of tuned values: stable text, far below any effect on training


def _feasible(t: FrozenTrial) -> bool:
    constraints = t.system_attrs.get("constraints", []) or []
    return all(v <= 0 for v in constraints)


def best_trial(study: optuna.Study) -> tuple[FrozenTrial, bool]:
    """Best COMPLETE trial whose constraints hold; else the best COMPLETE one (and False).

    Ties go to the earlier trial, so the choice does not depend on anything but the values.
    """
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise TuneError(
            f"study {study.study_name!r} has no completed trial (all pruned or failed)"
        )
    feasible = [t for t in done if _feasible(t)]
    pool = feasible or done
    return max(pool, key=lambda t: (t.value, -t.number)), bool(feasible)


def section(
    study: optuna.Study, classes: list[str], architecture: str, metric: str
) -> dict[str, Any]:
    """The tuned file's section for one strategy."""
    best, feasible = best_trial(study)
    p = best.params
    out: dict[str, Any] = {
        "architecture": architecture,
        "class_weights": {c: round(float(p[f"w_{c}"]), DIGITS) for c in classes},
        "lr": float(f"{p['lr']:.{DIGITS}g}"),
    }
    if "min_std" in p:
        out["filter"] = {
            "min_std": round(float(p["min_std"]), DIGITS),
            "min_entropy": round(float(p["min_entropy"]), DIGITS),
            "kept": list(best.user_attrs.get("kept_files", [])),
        }
    out["study"] = {
        "name": study.study_name,
        "best_trial": best.number,
        metric: round(float(best.value), DIGITS),
        "feasible": feasible,
        "finished_trials": len(study.get_trials(deepcopy=False, states=FINISHED)),
        "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
    }
    return out


def write_tuned(path: Path | str, sections: dict[str, Any]) -> None:
    import yaml

    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump(sections, sort_keys=False))


def save_plots(study: optuna.Study, out_dir: Path | str) -> list[Path]:
    """Optimisation history and parameter importances (matplotlib, Agg) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    for name, fn in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" warnings of optuna.visualization
            ax = fn(study)
        fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(out_dir / name)
    return paths
