"""The verdict on a comparison, and the family of comparisons around a pre-registered primary.

A comparison is a strategy against a control of the same architecture (the baseline, or a
same-share control such as ``oversample_matched-<G>``), on the same pooled out-of-fold frames.
:func:`compare` computes all of its statistics; :func:`decide` turns one endpoint into a verdict:

* **"hurts"**: the rare-class endpoint is significantly worse (exact p <= alpha, negative
  estimate, the interval with seed variance entirely below 0), or macro-F1 is shown worse than the
  non-inferiority margin (its interval's upper bound < -margin).
* **"cannot be shown"**: even if every patient moved the same way (p = 2/2^n, the smallest p
  the exact test can reach with these patients), the comparison would not be significant: for
  the primary 2/2^n > alpha; for a secondary its Holm-adjusted p, with the other secondaries'
  p-values as observed, would stay above alpha. Neither "helps" nor "no evidence of help": the
  design cannot answer. The reason names how many patients all moving the same way would do.
* **"helps"**: the exact sign-flip p <= alpha (Holm-adjusted for a secondary), the estimate is
  positive, the interval with seed variance is above 0 (so a difference between these particular
  trained models that seed noise explains is not a help), and macro-F1 is non-inferior
  (its interval's lower bound > -margin).
* **"no evidence of help"**: anything else; the reason says which condition failed.

So no verdict can contradict the exact test: "helps" and "hurts" (on the rare class) need it
to reject. The decision uses the two-sided test; "helps" is its positive half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lusaug.core.config import RARE_ENDPOINTS
from lusaug.inference.endpoints import PatientCounts, PatientEndpoints
from lusaug.inference.intervals import (
    PairedEndpoint,
    PopulationDifference,
    compare_patients,
    compare_population,
)
from lusaug.inference.multiplicity import ChanceInFamily, chance_in_family, holm
from lusaug.inference.signflip import min_attainable_p
from lusaug.inference.types import InferenceError, JsonResult

HELPS = "helps"
NO_EVIDENCE = "no evidence of help"
HURTS = "hurts"
CANNOT = "cannot be shown"
VERDICTS = (HELPS, NO_EVIDENCE, HURTS, CANNOT)
NON_INFERIORITY_METRIC = "f1_macro"


def comparison_name(strategy: str, control: str, architecture: str) -> str:
    """The key of a comparison in metrics/comparison.json."""
    return f"{strategy} vs {control} ({architecture})"


@dataclass(frozen=True)
class PrimarySpec(JsonResult):
    """The pre-registered primary comparison (``evaluate.primary`` in params)."""

    strategy: str
    control: str
    architecture: str
    endpoint: str  # one of RARE_ENDPOINTS

    def __post_init__(self) -> None:
        if self.endpoint not in RARE_ENDPOINTS:
            raise InferenceError(
                f"evaluate.primary.endpoint must be one of {RARE_ENDPOINTS}, got {self.endpoint!r}"
            )

    @property
    def name(self) -> str:
        return comparison_name(self.strategy, self.control, self.architecture)


@dataclass(frozen=True)
class Comparison(JsonResult):
    """Every statistic of one strategy-vs-control comparison."""

    strategy: str
    control: str
    architecture: str
    rare: dict[str, PairedEndpoint]  # endpoint -> per-patient test and interval
    population: dict[str, PopulationDifference]  # metric -> two-way interval

    @property
    def name(self) -> str:
        return comparison_name(self.strategy, self.control, self.architecture)


def compare(
    strategy: tuple[PatientEndpoints, PatientCounts],
    control: tuple[PatientEndpoints, PatientCounts],
    names: tuple[str, str, str],
    *,
    ci: float = 0.95,
    max_patterns: int = 2**16,
    mc_draws: int = 100_000,
    seed: int = 0,
    endpoints: tuple[str, ...] = RARE_ENDPOINTS,
    metrics: tuple[str, ...] = ("accuracy", NON_INFERIORITY_METRIC),
    bootstrap_draws: int = 0,
    min_patients_for_bootstrap: int = 10,
    run_reference: Sequence[tuple[PatientEndpoints, PatientCounts]] = (),
) -> Comparison:
    """All endpoints of one comparison.

    Args:
        strategy: the strategy setting's (rare-class endpoints, per-patient counts).
        control: the control setting's, on the same patients.
        names: (strategy, control, architecture).
        ci: interval level.
        max_patterns: exact sign-flip test up to this many patterns, Monte Carlo beyond.
        mc_draws: Monte Carlo draws beyond it.
        seed: seed of the Monte Carlo path and of the descriptive bootstrap.
        endpoints: rare-class endpoints to compare (the deciding one is needed by :func:`decide`).
        metrics: population metrics to compare (macro-F1 is needed by :func:`decide`).
        bootstrap_draws: draws of the descriptive percentile bootstrap (0 = none).
        min_patients_for_bootstrap: see :func:`compare_population`.
        run_reference: settings whose between-run variance replaces the two arms' in every
            interval (the placebo passes the whole baseline; see
            :func:`~lusaug.inference.intervals.two_way_interval`).
    """
    test = {"ci": ci, "max_patterns": max_patterns, "mc_draws": mc_draws, "seed": seed}
    ref_ends = [r[0] for r in run_reference]
    rare = {
        e: compare_patients(strategy[0], control[0], e, **test, run_reference=ref_ends)
        for e in endpoints
    }
    population = {
        m: compare_population(
            strategy[1],
            control[1],
            m,
            ci=ci,
            bootstrap_draws=bootstrap_draws,
            bootstrap_seed=seed,
            min_patients_for_bootstrap=min_patients_for_bootstrap,
            run_reference=[r[1] for r in run_reference],
        )
        for m in metrics
    }
    return Comparison(*names, rare, population)


@dataclass(frozen=True)
class NonInferiority(JsonResult):
    metric: str
    margin: float  # in the metric's units (0.02 = 2 points)
    estimate: float
    lo: float
    hi: float
    non_inferior: bool  # lo > -margin
    inferior: bool  # hi < -margin: shown worse than the margin


def non_inferiority(diff: PopulationDifference, margin: float) -> NonInferiority:
    """Non-inferiority of a population metric: the interval's lower bound above -margin."""
    if margin < 0:
        raise InferenceError(f"the non-inferiority margin must be >= 0, got {margin}")
    lo, hi = diff.interval.lo, diff.interval.hi
    return NonInferiority(
        diff.metric, margin, diff.estimate, lo, hi, bool(lo > -margin), bool(hi < -margin)
    )


@dataclass(frozen=True)
class Decision(JsonResult):
    """The verdict on one comparison's endpoint."""

    comparison: str
    role: str  # "primary" | "secondary" | "placebo"
    endpoint: str
    verdict: str  # one of VERDICTS
    reason: str
    estimate: float
    lo: float  # the rare endpoint's interval (patients and seeds)
    hi: float
    p_value: float  # exact sign-flip p
    p_adjusted: float  # Holm-adjusted within the family (= p_value for the primary)
    alpha: float
    best_p_adjusted: float  # its (adjusted) p if every patient moved the same way
    n_patients: int
    n_nonzero: int
    min_p: float
    patients_needed: int  # patients all moving the same way for best_p_adjusted <= alpha
    non_inferiority: NonInferiority


MAX_PATIENTS_SEARCHED = 64  # 2/2^64: far below any alpha / family size in use


def _adjusted(p: float, family_p: Sequence[float]) -> float:
    """Holm-adjusted p of ``p`` within its family (the other members' p as given)."""
    return float(holm([p, *family_p])[0])


def _needed(alpha: float, family_p: Sequence[float], alternative: str) -> int:
    """Patients all moving the same way for the (adjusted) p to reach ``alpha``."""
    for n in range(1, MAX_PATIENTS_SEARCHED + 1):
        if _adjusted(min_attainable_p(n, alternative), family_p) <= alpha:
            return n
    raise InferenceError(f"alpha {alpha} cannot be reached with {MAX_PATIENTS_SEARCHED} patients")


def decide(
    comparison: Comparison,
    endpoint: str,
    *,
    alpha: float,
    margin: float,
    role: str = "primary",
    family_p: Sequence[float] = (),
) -> Decision:
    """Verdict on ``endpoint`` of one comparison (see the module docstring for the rule).

    Args:
        comparison: from :func:`compare`.
        endpoint: the rare-class endpoint that decides ("recall", "auroc", "ap").
        alpha: level of the decision.
        margin: macro-F1 non-inferiority margin.
        role: "primary", "secondary" or "placebo" (recorded).
        family_p: raw p-values of the OTHER members of its Holm family (none for the primary).
    """
    rare = comparison.rare[endpoint]
    test = rare.test
    p_used = _adjusted(test.p_value, family_p)
    best = _adjusted(test.min_p, family_p)
    need = _needed(alpha, family_p, test.alternative)
    ni = non_inferiority(comparison.population[NON_INFERIORITY_METRIC], margin)
    lo, hi, est = rare.interval.lo, rare.interval.hi, rare.estimate
    significant = p_used <= alpha
    f1_text = f"macro-F1 {ni.estimate:+.4f} [{ni.lo:.4f}, {ni.hi:.4f}], margin {margin:g}"
    p_text = f"exact p = {test.p_value:.4g}" + (f" (Holm {p_used:.4g})" if family_p else "")
    if significant and est < 0 and hi < 0:
        verdict, reason = HURTS, f"{endpoint} worse: {p_text}, interval below 0"
    elif ni.inferior:
        verdict, reason = HURTS, f"{f1_text}: worse than the margin"
    elif best > alpha:
        zeros = test.n_patients - test.n_nonzero
        verdict = CANNOT
        reason = (
            f"cannot be shown with {test.n_patients} patients"
            + (f" ({zeros} with no difference)" if zeros else "")
            + f": the smallest attainable p is {test.min_p:.4g}"
            + (f" (Holm {best:.4g} in this family)" if family_p else "")
            + f" > alpha = {alpha:g}; {need} patients all moving the same way would be needed"
        )
    elif significant and est > 0 and lo > 0 and ni.non_inferior:
        verdict, reason = HELPS, f"{endpoint} better: {p_text}, interval above 0; {f1_text}"
    elif not significant:
        verdict, reason = NO_EVIDENCE, f"{p_text} > alpha = {alpha:g}"
    elif not (lo > 0 or hi < 0):
        verdict = NO_EVIDENCE
        reason = (
            f"{p_text}, but the interval with seed variance [{lo:.4f}, {hi:.4f}] includes 0: "
            "these trained models differ, by no more than seed noise explains"
        )
    else:
        verdict, reason = NO_EVIDENCE, f"{endpoint} better, but {f1_text}: not non-inferior"
    return Decision(
        comparison.name,
        role,
        endpoint,
        verdict,
        reason,
        est,
        lo,
        hi,
        test.p_value,
        p_used,
        alpha,
        best,
        test.n_patients,
        test.n_nonzero,
        test.min_p,
        need,
        ni,
    )


@dataclass(frozen=True)
class FamilyDecision(JsonResult):
    """The primary's verdict at alpha; the secondaries' with Holm; what chance would give."""

    primary: Decision
    secondaries: dict[str, Decision]
    holm: dict[str, dict[str, float]]  # endpoint -> secondary comparison -> Holm-adjusted p
    chance: ChanceInFamily  # of the secondaries, on the primary's endpoint
    helps_among_secondaries: int


def decide_family(
    comparisons: Mapping[str, Comparison],
    primary: PrimarySpec,
    *,
    alpha: float,
    margin: float,
) -> FamilyDecision:
    """Verdicts of every comparison: the pre-registered primary at alpha, the rest with Holm.

    Args:
        comparisons: name (:func:`comparison_name`) -> comparison; must hold the primary.
        primary: the pre-registered primary comparison.
        alpha: decision level.
        margin: macro-F1 non-inferiority margin.
    """
    if primary.name not in comparisons:
        raise InferenceError(
            f"evaluate.primary {primary.name!r} is not among the comparisons run: "
            f"{sorted(comparisons)}"
        )
    first = decide(comparisons[primary.name], primary.endpoint, alpha=alpha, margin=margin)
    others = sorted(n for n in comparisons if n != primary.name)
    endpoints = comparisons[primary.name].rare
    adjusted = {
        e: dict(zip(others, holm([comparisons[n].rare[e].test.p_value for n in others])))
        for e in endpoints
    }
    raw = {n: comparisons[n].rare[primary.endpoint].test.p_value for n in others}
    secondaries = {
        n: decide(
            comparisons[n],
            primary.endpoint,
            alpha=alpha,
            margin=margin,
            role="secondary",
            family_p=[raw[o] for o in others if o != n],
        )
        for n in others
    }
    ns = sorted(comparisons[n].rare[primary.endpoint].test.n_nonzero for n in others)
    chance = chance_in_family(len(others), alpha, ns[len(ns) // 2] if ns else None)
    helps = sum(d.verdict == HELPS for d in secondaries.values())
    return FamilyDecision(first, secondaries, adjusted, chance, helps)
