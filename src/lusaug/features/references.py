"""Real-vs-real references: what "another patient of the same class" looks like in the space.

Per class, three sets of patient-level values (patients with fewer than
``features.fidelity.min_frames`` frames are left out and counted):

- ``val_vs_val``: every ordered pair of DIFFERENT validation patients of the class (nobody
  trained on either): KID, and PRDC of the second patient's frames against the first's;
- ``val_vs_train``: each validation patient against the class's training frames;
- ``val_vs_other_class``: each validation patient against the nearest OTHER class's training
  frames (the between-class distance the class-distance reference must beat).

Each value set is summarised by its median with a percentile interval over resampled
validation patients (a drawn patient brings all of its pairs), never over frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lusaug.features.estimates import Estimate, kid, percentile_interval, prdc_scores
from lusaug.features.measures import FidelityContext

METRICS = ("kid", "precision", "coverage")


@dataclass
class _PatientValues:
    """metric -> patient -> values contributed by that patient."""

    values: dict[str, dict[str, list[float]]]

    @classmethod
    def empty(cls) -> _PatientValues:
        return cls({m: {} for m in METRICS})

    def add(self, patient: str, metric: str, value: float | None) -> None:
        if value is not None:
            self.values[metric].setdefault(patient, []).append(float(value))


def summarise(per_patient: dict[str, list[float]], resamples: int, ci: float, seed: int):
    """Median over all values, interval over patient resamples."""
    patients = sorted(per_patient)
    if not patients:
        return Estimate(None)
    everything = [v for p in patients for v in per_patient[p]]
    rng = np.random.default_rng(seed)
    medians = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(patients), len(patients))
        medians.append(float(np.median([v for i in drawn for v in per_patient[patients[i]]])))
    return Estimate(float(np.median(everything)), *percentile_interval(medians, ci), resamples)


def _patients(ctx: FidelityContext, label: str) -> tuple[list[str], list[str]]:
    val = ctx.val.of_class(label)
    kept, small = [], []
    for p in sorted(set(val.patients)):
        (kept if (val.patients == p).sum() >= ctx.cfg.min_frames else small).append(p)
    return kept, small


def _pair_values(ctx: FidelityContext, label: str, kept: list[str]) -> dict[str, _PatientValues]:
    z_val = ctx.scaler(ctx.val.feats)
    z_train = ctx.scaler(ctx.train.feats)
    frames = {p: z_val[ctx.val.patients == p] for p in kept}
    k = ctx.cfg.prdc_k
    out = {name: _PatientValues.empty() for name in ("val_vs_val", "val_vs_train")}
    out["val_vs_other_class"] = _PatientValues.empty()
    own = z_train[ctx.train.labels == label]
    for p in kept:
        for q in kept:
            if p != q:
                out["val_vs_val"].add(p, "kid", kid(frames[p], frames[q]))
                scores = prdc_scores(frames[q], frames[p], k) or {}
                out["val_vs_val"].add(p, "precision", scores.get("precision"))
                out["val_vs_val"].add(p, "coverage", scores.get("coverage"))
        out["val_vs_train"].add(p, "kid", kid(frames[p], own))
        scores = prdc_scores(own, frames[p], k) or {}
        out["val_vs_train"].add(p, "precision", scores.get("precision"))
        out["val_vs_train"].add(p, "coverage", scores.get("coverage"))
        other = [kid(frames[p], z_train[ctx.train.labels == c]) for c in ctx.classes if c != label]
        out["val_vs_other_class"].add(p, "kid", min(v for v in other if v is not None))
    return out


def references(ctx: FidelityContext) -> dict[str, Any]:
    """The per-class reference table (see the module docstring)."""
    cfg = ctx.cfg
    table: dict[str, Any] = {}
    for label in ctx.classes:
        kept, small = _patients(ctx, label)
        entry: dict[str, Any] = {"patients": kept, "too_few_frames": small}
        for name, vals in _pair_values(ctx, label, kept).items():
            entry[name] = {
                m: summarise(vals.values[m], cfg.resamples, cfg.ci, cfg.seed).as_dict()
                for m in METRICS
                if vals.values[m]
            }
        table[label] = entry
    return table
