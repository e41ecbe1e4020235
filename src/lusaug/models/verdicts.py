"""The verdicts of a study: :mod:`lusaug.inference` applied to the pooled out-of-fold runs.

Per **setting** (strategy x architecture, its seed runs stacked): the rare class's per-patient
recall, one-vs-rest AUROC and AP, and per-patient confusion counts for accuracy, macro-F1 and
balanced accuracy; each value with its interval over patients and seeds
(:func:`~lusaug.inference.setting_value`).

Per **comparison** (:func:`comparison_pairs`): every strategy against the baseline of its
architecture, every ``synthetic-<G>`` against its same-share control ``oversample_matched-<G>``,
and the pre-registered primary (``evaluate.primary``): the exact patient-level sign-flip test,
the interval with seeds, the population differences (:func:`~lusaug.inference.compare`). When
neither arm has two runs, the between-run variance comes from the architecture's settings that
do (the same equal-variance assumption a 1-run arm makes against a 2-run one), and the
interval's method says so.

Per **study**: the primary's verdict at alpha, the others Holm-adjusted within the family, what
chance alone would give there (:func:`~lusaug.inference.decide_family`); the placebo per
architecture (baseline vs baseline on disjoint seed halves, the same machinery); from the
primary architecture's placebo, the minimum detectable difference and the patients and seeds a
study would need (:func:`~lusaug.inference.minimum_detectable`, ``sample_size``).

Everything is returned as JSON-ready dicts (``to_dict()``), ready for metrics/comparison.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lusaug.core.config import MATCHED_PREFIX, SYNTHETIC_PREFIX, EvaluateParams, parse_strategy
from lusaug.inference import (
    HELPS,
    HURTS,
    POPULATION_METRICS,
    RARE_ENDPOINTS,
    Comparison,
    Decision,
    InferenceError,
    PatientCounts,
    PatientEndpoints,
    PrimarySpec,
    chance_in_family,
    compare,
    comparison_name,
    decide,
    decide_family,
    holm,
    minimum_detectable,
    patient_counts,
    rare_patient_endpoints,
    run_placebo,
    sample_size,
    setting_value,
)
from lusaug.models.oof import RunOOF

VS_BASELINE = "vs baseline"
SAME_SHARE = "same-share control"
PRIMARY = "primary"
NOT_EVALUATED = "not evaluated"
PLACEBO_NOT_RUN = "not run"


def setting_key(strategy: str, arch: str) -> str:
    """``<strategy>-<arch>``: a setting's name in every metrics file."""
    return f"{strategy}-{arch}"


@dataclass
class Setting:
    """One strategy x architecture: its runs and, when every fold ran them, their inference."""

    strategy: str
    arch: str
    runs: list[RunOOF]
    ends: PatientEndpoints | None = None  # rare-class endpoints per run and rare patient
    counts: PatientCounts | None = None  # per-patient confusion counts per run
    unavailable: str = ""  # why not (a fold skipped a run)

    @property
    def key(self) -> str:
        return setting_key(self.strategy, self.arch)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def arms(self) -> tuple[PatientEndpoints, PatientCounts]:
        assert self.ends is not None and self.counts is not None, self.unavailable
        return self.ends, self.counts


def build_settings(
    runs: Sequence[RunOOF],
    y: np.ndarray,
    patient_ids: np.ndarray,
    rare: int,
) -> dict[str, Setting]:
    """Every setting of ``runs`` (in run order) with its stacked inference inputs."""
    grouped: dict[tuple[str, str], list[RunOOF]] = {}
    for r in runs:
        grouped.setdefault((r.strategy, r.arch), []).append(r)
    out = {}
    for (strategy, arch), rs in grouped.items():
        s = Setting(strategy, arch, rs)
        skipped = [f"{r.name} fold {k}: {why}" for r in rs for k, why in r.skipped.items()]
        if skipped:
            s.unavailable = skipped[0]
        else:
            probs = np.stack([r.test_prob for r in rs])
            s.ends = rare_patient_endpoints(y, patient_ids, probs, rare, s.seeds)
            s.counts = patient_counts(y, patient_ids, probs, s.seeds)
        out[s.key] = s
    return out


def setting_values(settings: dict[str, Setting], ci: float) -> dict[str, dict[str, Any]]:
    """Per available setting: every rare endpoint and population metric with its interval."""
    out: dict[str, dict[str, Any]] = {}
    for key, s in settings.items():
        if s.unavailable:
            continue
        ends, counts = s.arms
        values = {e: setting_value(ends, e, ci=ci) for e in RARE_ENDPOINTS}
        values |= {m: setting_value(counts, m, ci=ci) for m in POPULATION_METRICS}
        out[key] = {k: v.to_dict() for k, v in values.items()}
    return out


def comparison_pairs(
    settings: dict[str, Setting], baseline: str, primary: PrimarySpec
) -> dict[str, tuple[str, str, str, str]]:
    """name -> (strategy, control, architecture, kind) of every comparison the study makes."""
    planned = {(s.strategy, s.arch) for s in settings.values()}
    pairs: dict[str, tuple[str, str, str, str]] = {}
    for s in settings.values():
        if s.strategy != baseline and (baseline, s.arch) in planned:
            pairs[comparison_name(s.strategy, baseline, s.arch)] = (
                s.strategy,
                baseline,
                s.arch,
                VS_BASELINE,
            )
        if parse_strategy(s.strategy).kind == "synthetic":
            control = MATCHED_PREFIX + parse_strategy(s.strategy).generator
            if (control, s.arch) in planned:
                pairs[comparison_name(s.strategy, control, s.arch)] = (
                    s.strategy,
                    control,
                    s.arch,
                    SAME_SHARE,
                )
    kind = pairs.get(primary.name, (None, None, None, PRIMARY))[3]
    pairs[primary.name] = (primary.strategy, primary.control, primary.architecture, kind)
    return pairs


def _run_reference(
    settings: dict[str, Setting], a: Setting, b: Setting
) -> list[tuple[PatientEndpoints, PatientCounts]]:
    """The architecture's multi-run settings, when neither arm has two runs (else none)."""
    if len(a.runs) > 1 or len(b.runs) > 1:
        return []
    return [
        s.arms
        for s in settings.values()
        if s.arch == a.arch and not s.unavailable and len(s.runs) > 1
    ]


def compare_options(cfg: EvaluateParams, seed: int) -> dict[str, Any]:
    """The keyword arguments every comparison (and the placebo) shares."""
    return {
        "ci": cfg.ci,
        "max_patterns": cfg.max_sign_patterns,
        "mc_draws": cfg.mc_draws,
        "seed": seed,
        "metrics": POPULATION_METRICS,
        "bootstrap_draws": cfg.bootstrap,
        "min_patients_for_bootstrap": cfg.min_patients_for_bootstrap,
    }


def run_comparisons(
    settings: dict[str, Setting],
    pairs: dict[str, tuple[str, str, str, str]],
    cfg: EvaluateParams,
    seed: int,
) -> tuple[dict[str, Comparison], dict[str, str]]:
    """Every comparison both of whose settings are available; the others with the reason."""
    done: dict[str, Comparison] = {}
    skipped: dict[str, str] = {}
    for name, (strategy, control, arch, _) in pairs.items():
        a, b = settings.get(setting_key(strategy, arch)), settings.get(setting_key(control, arch))
        if a is None or b is None:
            missing = setting_key(strategy, arch) if a is None else setting_key(control, arch)
            skipped[name] = f"{missing} is not in the training matrix"
            continue
        if a.unavailable or b.unavailable:
            skipped[name] = a.unavailable or b.unavailable
            continue
        done[name] = compare(
            a.arms,
            b.arms,
            (strategy, control, arch),
            run_reference=_run_reference(settings, a, b),
            **compare_options(cfg, seed),
        )
    return done, skipped


def decide_all(
    comparisons: dict[str, Comparison], primary: PrimarySpec, cfg: EvaluateParams
) -> dict[str, Any]:
    """The family's decisions: the primary at alpha and the rest Holm-adjusted
    (:func:`~lusaug.inference.decide_family`); when the primary could not be evaluated, every
    comparison is a secondary of the same family."""
    alpha, margin, endpoint = cfg.alpha, cfg.noninferiority_margin, primary.endpoint
    if primary.name in comparisons:
        fam = decide_family(comparisons, primary, alpha=alpha, margin=margin)
        decisions = {primary.name: fam.primary, **fam.secondaries}
        return {
            "primary": fam.primary,
            "decisions": decisions,
            "holm": fam.holm,
            "chance": fam.chance,
            "helps_among_secondaries": fam.helps_among_secondaries,
        }
    names = sorted(comparisons)
    raw = {n: comparisons[n].rare[endpoint].test.p_value for n in names}
    decisions = {
        n: decide(
            comparisons[n],
            endpoint,
            alpha=alpha,
            margin=margin,
            role="secondary",
            family_p=[raw[o] for o in names if o != n],
        )
        for n in names
    }
    adjusted = {
        e: dict(
            zip(names, holm([comparisons[n].rare[e].test.p_value for n in names]), strict=True)
        )
        for e in RARE_ENDPOINTS
    }
    ns = sorted(comparisons[n].rare[endpoint].test.n_nonzero for n in names)
    return {
        "primary": None,
        "decisions": decisions,
        "holm": adjusted,
        "chance": chance_in_family(len(names), alpha, ns[len(ns) // 2] if ns else None),
        "helps_among_secondaries": sum(d.verdict == HELPS for d in decisions.values()),
    }


def placebos(
    settings: dict[str, Setting], baseline: str, endpoint: str, cfg: EvaluateParams, seed: int
) -> dict[str, Any]:
    """Per architecture: the placebo (baseline vs baseline, disjoint seed halves), or why not."""
    out: dict[str, Any] = {}
    for s in settings.values():
        if s.strategy != baseline:
            continue
        if s.unavailable:
            out[s.arch] = {"not_run": f"{s.key} is not available: {s.unavailable}"}
            continue
        try:
            out[s.arch] = run_placebo(
                s.arms,
                s.arch,
                endpoint,
                alpha=cfg.alpha,
                margin=cfg.noninferiority_margin,
                **compare_options(cfg, seed),
            )
        except InferenceError as err:
            out[s.arch] = {"not_run": f"{s.key} has seeds {s.seeds}: {err}"}
    return out


def design_limits(
    placebo: Any, settings: dict[str, Setting], primary: PrimarySpec, cfg: EvaluateParams
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The primary's minimum detectable difference and the study size for
    ``evaluate.target_effect``, both from the placebo's noise floor (or why not)."""
    if isinstance(placebo, dict):
        why = {"not_run": f"no placebo, so no noise floor: {placebo['not_run']}"}
        return why, None
    runs = [
        len(settings[k].runs) if k in settings else 1
        for k in (
            setting_key(primary.strategy, primary.architecture),
            setting_key(primary.control, primary.architecture),
        )
    ]
    mdd = minimum_detectable(
        placebo.floor, alpha=cfg.alpha, power=cfg.power, seeds=(runs[0], runs[1])
    )
    size = sample_size(
        placebo.floor,
        cfg.target_effect,
        alpha=cfg.alpha,
        power=cfg.power,
        seeds_grid=cfg.seeds_grid,
    )
    return mdd.to_dict(), None if size is None else size.to_dict()


def direction(decision: Decision | None) -> str:
    """One word for a verdict in flat files ('not evaluated' when there is none)."""
    return NOT_EVALUATED if decision is None else decision.verdict


def placebo_word(placebo: Any) -> str:
    """The placebo's verdict in a word or two: 'no difference', 'difference' or 'not run'."""
    if isinstance(placebo, dict):
        return PLACEBO_NOT_RUN
    return "difference" if placebo.decision.verdict in (HELPS, HURTS) else placebo.verdict


def primary_spec(cfg: EvaluateParams) -> PrimarySpec:
    p = cfg.primary
    return PrimarySpec(p.strategy, p.control, p.architecture, p.endpoint)


def synthetic_twin(strategy: str) -> str | None:
    """``synthetic-<G>`` of ``oversample_matched-<G>`` (None for any other strategy)."""
    s = parse_strategy(strategy)
    return SYNTHETIC_PREFIX + s.generator if s.kind == "matched" else None
