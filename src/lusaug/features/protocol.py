"""The fidelity protocol of one fold: targets from new real patients, controls, usable targets.

1. **Calibration** (:func:`calibrate`). Every validation patient of a non-rare class (nobody
   trained on them: not the encoder, not a generator) is scored as a candidate of its own class
   (:func:`lusaug.features.measures.evaluate`) against as many of its class's training
   patients as the rare class has (``reference_draws`` random sets, median): a new patient
   looks farther from 2 training patients than from 23, and the rare class has 2. A
   measure's **target** is the
   ``target_quantile`` of those values (the ``1 - target_quantile`` one for higher-is-better
   measures): a candidate must do at least as well as that share of new real patients. The
   copy-rate targets are at least ``max_copy_rate``. Each threshold has a percentile interval
   over resampled calibration patients. The rare class's validation patient is left out, so it
   can serve as the positive control.
2. **Controls** (:func:`controls_table`). The negative controls of
   :mod:`lusaug.features.controls` and the held-out rare patient go through the same measures.
3. **The rule.** A measure is *usable as a target* in this fold only when every control it is
   meant to catch fails it AND the held-out real patient passes it. A measure that lets a
   control through, or rejects a real patient, is reported but never gates a generator.
4. **Judging a generator** (:func:`judge`): its values beside the targets, and a verdict from
   the usable targets only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lusaug.features.controls import MEANT_TO_CATCH, NEGATIVE, POSITIVE
from lusaug.features.estimates import Estimate, percentile_interval
from lusaug.features.measures import (
    HIGHER,
    LOWER,
    MEASURES,
    Candidate,
    Evaluation,
    FidelityContext,
    evaluate,
)

COPY_MEASURES = ("copy_rate_pixel", "copy_rate_ssl")


@dataclass
class Target:
    measure: str
    direction: str  # lower | higher
    threshold: float | None  # None = not assessable (no calibration value)
    interval: Estimate  # the threshold's interval over resampled calibration patients
    patients: int  # calibration patients with a value

    def passes(self, value: float | None) -> bool | None:
        if value is None or self.threshold is None:
            return None
        return value <= self.threshold if self.direction == LOWER else value >= self.threshold


@dataclass
class Calibration:
    targets: dict[str, Target]
    per_patient: list[dict[str, Any]]  # patient, label, frames and every measure's value


def _quantile(values: np.ndarray, direction: str, q: float) -> float:
    return float(np.quantile(values, q if direction == LOWER else 1.0 - q))


def _target(measure: str, values: list[float | None], ctx: FidelityContext) -> Target:
    direction, cfg = MEASURES[measure], ctx.cfg
    v = np.asarray([x for x in values if x is not None], float)
    if len(v) == 0:
        return Target(measure, direction, None, Estimate(None), 0)
    rng = np.random.default_rng(cfg.seed)
    draws = [
        _quantile(v[rng.integers(0, len(v), len(v))], direction, cfg.target_quantile)
        for _ in range(cfg.resamples)
    ]
    threshold = _quantile(v, direction, cfg.target_quantile)
    lo, hi = percentile_interval(draws, cfg.ci)
    if measure in COPY_MEASURES:
        threshold, lo, hi = (max(x, cfg.max_copy_rate) for x in (threshold, lo, hi))
    return Target(measure, direction, threshold, Estimate(threshold, lo, hi, len(draws)), len(v))


def patient_candidate(ctx: FidelityContext, patient: str) -> Candidate:
    """One validation patient's frames as a candidate of its own class."""
    m = ctx.val.patients == patient
    label = str(ctx.val.labels[m][0])
    return Candidate(
        f"patient {patient}", ctx.val.images[m], ctx.val.feats[m], label, frozenset([patient])
    )


def calibration_patients(ctx: FidelityContext) -> list[str]:
    """Validation patients of the non-rare classes with at least ``min_frames`` frames."""
    out = []
    for p in sorted(set(ctx.val.patients)):
        m = ctx.val.patients == p
        if ctx.val.labels[m][0] != ctx.rare and m.sum() >= ctx.cfg.min_frames:
            out.append(p)
    return out


def _reference_draws(ctx: FidelityContext, label: str, rng: np.random.Generator):
    """Sets of as many training patients of ``label`` as the rare class has."""
    patients = sorted(set(ctx.train.patients[ctx.train.labels == label]))
    n = len(set(ctx.train.patients[ctx.train.labels == ctx.rare]))
    if len(patients) <= n:
        return [patients]
    return [
        sorted(rng.choice(patients, size=n, replace=False)) for _ in range(ctx.cfg.reference_draws)
    ]


def _median(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def score_patient(ctx: FidelityContext, patient: str, rng: np.random.Generator) -> dict:
    """One validation patient's measures against size-matched sets of its class's training
    patients (median over the draws)."""
    cand = patient_candidate(ctx, patient)
    draws = [
        evaluate(cand, replace(ctx, train=ctx.train.keep_patients(cand.label, chosen))).values
        for chosen in _reference_draws(ctx, cand.label, rng)
    ]
    values = {m: _median([d[m] for d in draws]) for m in MEASURES}
    return {"patient": patient, "label": cand.label, "frames": len(cand.images), **values}


def calibrate(ctx: FidelityContext) -> Calibration:
    """Score each calibration patient; set every measure's target (module docstring, step 1)."""
    rng = np.random.default_rng(ctx.cfg.seed)
    rows = [score_patient(ctx, p, rng) for p in calibration_patients(ctx)]
    targets = {
        m: _target(m, [r[m] for r in rows], ctx)
        for m, d in MEASURES.items()
        if d in (LOWER, HIGHER)
    }
    return Calibration(targets, rows)


@dataclass
class ControlsTable:
    """control x measure -> value, target, pass/fail; and which measures may be targets."""

    rows: list[dict[str, Any]]
    usable: dict[str, bool]
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "usable": self.usable, "reasons": self.reasons}


def _row(control: str, measure: str, value, target: Target) -> dict[str, Any]:
    passed = target.passes(value)
    must_fail = measure in MEANT_TO_CATCH.get(control, ())
    expected = "pass" if control == POSITIVE else ("fail" if must_fail else "either")
    ok = None if passed is None else (expected == "either" or passed == (expected == "pass"))
    return {
        "control": control,
        "measure": measure,
        "value": value,
        "direction": target.direction,
        "threshold": target.threshold,
        "passed": passed,
        "expected": expected,
        "as_expected": ok,
    }


def _said(row: dict[str, Any]) -> str:
    return "not assessable" if row["passed"] is None else ("passed" if row["passed"] else "failed")


def _usable(measure: str, rows: list[dict[str, Any]]) -> tuple[bool, str]:
    mine = [r for r in rows if r["measure"] == measure and r["expected"] != "either"]
    if not any(r["control"] == POSITIVE for r in mine):
        return False, "no held-out real patient to check it against"
    if not any(r["expected"] == "fail" for r in mine):
        return False, "no negative control is meant to test it"
    bad = [r for r in mine if r["as_expected"] is not True]
    if bad:
        return False, "not a target: " + ", ".join(f"{r['control']} {_said(r)}" for r in bad)
    return True, "every control it must catch fails it; the held-out real patient passes"


def controls_table(evaluations: dict[str, Evaluation], calibration: Calibration) -> ControlsTable:
    """Run the rule of the module docstring over the controls' evaluations."""
    rows = [
        _row(control, m, evaluations[control].values.get(m), target)
        for control in (*NEGATIVE, POSITIVE)
        if control in evaluations
        for m, target in calibration.targets.items()
    ]
    verdicts = {m: _usable(m, rows) for m in calibration.targets}
    return ControlsTable(
        rows, {m: v[0] for m, v in verdicts.items()}, {m: v[1] for m, v in verdicts.items()}
    )


def judge(ev: Evaluation, calibration: Calibration, table: ControlsTable) -> dict[str, Any]:
    """A candidate's values beside the targets; its verdict uses the usable targets only."""
    measures = {}
    for m, value in ev.values.items():
        target = calibration.targets.get(m)
        measures[m] = {
            "value": value,
            "threshold": target.threshold if target else None,
            "direction": MEASURES[m],
            "passed": target.passes(value) if target else None,
            "used_as_target": bool(table.usable.get(m, False)),
        }
    used = [v for v in measures.values() if v["used_as_target"]]
    return {
        "name": ev.name,
        "measures": measures,
        "targets_used": [m for m, v in measures.items() if v["used_as_target"]],
        "passes": all(v["passed"] is True for v in used) if used else None,
        "details": ev.details,
    }
