"""Hand-made settings for the inference tests: chosen per-patient values, chosen counts."""

from __future__ import annotations

import numpy as np

from lusaug.inference import PatientCounts, PatientEndpoints
from lusaug.inference.simulate import CONTROL, SimDesign, simulate


def endpoints(values: np.ndarray, seeds: list[int] | None = None) -> PatientEndpoints:
    """A setting from a (runs, patients) table of per-patient values (every endpoint alike)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    s, p = values.shape
    names = ("recall", "auroc", "ap")
    return PatientEndpoints(
        [f"p{i}" for i in range(p)],
        [10] * p,
        seeds or list(range(s)),
        {k: values for k in names},
        {k: values.mean(1) for k in names},
    )


def one_run_counts(seed: int = 0) -> PatientCounts:
    """Per-patient counts of one simulated run (compared with itself: macro-F1 difference 0)."""
    study = simulate(SimDesign(patients_per_class=(10, 8, 8, 4), seeds=1), seed)
    return study.setting(CONTROL)[1]


def collapsed(counts: PatientCounts) -> PatientCounts:
    """The same frames, every one predicted as class 0 (macro-F1 falls far)."""
    c = np.zeros_like(counts.counts)
    c[..., 0] = counts.counts.sum(-1)
    return PatientCounts(counts.patients, counts.strata, counts.seeds, c)
