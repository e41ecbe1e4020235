"""The evaluate stage's JSON files, laid out from the descriptive metrics and the verdicts.

* ``metrics/comparison.json`` (:func:`comparison_document`): everything the verdicts rest on.
* ``metrics/test.json`` (:func:`flat_settings`): one flat entry per setting, every metric with
  its interval; the verdict metrics (accuracy, macro-F1, balanced accuracy and the rare class's
  per-patient recall / AUROC / AP) with the interval over patients and seeds, every other metric
  with the descriptive percentile patient bootstrap, and ``intervals`` says which is which.
* ``metrics/summary.json`` (:func:`headline`): the handful of numbers ``dvc metrics show``
  prints, kept under 200 columns: lists (the primary's spec) are not shown by DVC.
"""

from __future__ import annotations

from typing import Any

from lusaug.core.config import RARE_ENDPOINTS, EvaluateParams
from lusaug.inference import POPULATION_METRICS, Comparison, PrimarySpec
from lusaug.models.verdicts import NOT_EVALUATED, direction, setting_key

RARE_PREFIX = "rare_"  # test.json: rare_recall, rare_auroc, rare_ap (mean over rare patients)
SUMMARY_DIGITS = 3  # summary.json rounds to this many decimals (dvc metrics show stays narrow)
DESCRIPTIVE = (
    "percentile patient bootstrap ({draws} draws{strata}), no seed term: descriptive only, "
    "never a verdict basis (not with fewer than {min_patients} patients in a class)"
)
VERDICT = (
    "t interval over patients (class-stratified delete-one-patient jackknife of the "
    "seed-averaged value) plus the between-run seed variance, Welch-Satterthwaite df"
)


def _jsonable(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def comparison_document(
    design: dict[str, Any],
    primary: PrimarySpec,
    comparisons: dict[str, Comparison],
    kinds: dict[str, str],
    not_evaluated: dict[str, str],
    family: dict[str, Any],
    placebos: dict[str, Any],
    limits: tuple[dict[str, Any], dict[str, Any] | None],
    values: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """metrics/comparison.json: the design, the primary and its verdict, the placebo, the MDD and
    sample size, the family (Holm, chance), every comparison with its decision, every setting."""
    decisions = family["decisions"]
    entries = {}
    for name, c in comparisons.items():
        d = decisions[name]
        entries[name] = {
            "strategy": c.strategy,
            "control": c.control,
            "architecture": c.architecture,
            "kind": kinds[name],
            "role": d.role,
            "rare": {e: v.to_dict() for e, v in c.rare.items()},
            "population": {m: v.to_dict() for m, v in c.population.items()},
            "p_holm": {
                e: (c.rare[e].test.p_value if name == primary.name else family["holm"][e][name])
                for e in c.rare
            },
            "decision": d.to_dict(),
        }
    first = family["primary"]
    mdd, size = limits
    return {
        "design": design,
        "primary": {
            **primary.to_dict(),
            "name": primary.name,
            "decision": None if first is None else first.to_dict(),
            "not_evaluated": not_evaluated.get(primary.name),
        },
        "placebo": _jsonable(
            placebos.get(
                primary.architecture, {"not_run": f"no baseline on {primary.architecture}"}
            )
        ),
        "placebos": {a: _jsonable(p) for a, p in placebos.items()},
        "mdd": mdd,
        "sample_size": size,
        "family": {
            "endpoint": primary.endpoint,
            "m": sum(1 for n in comparisons if n != primary.name),
            "chance": family["chance"].to_dict(),
            "holm": family["holm"],
            "helps_among_secondaries": family["helps_among_secondaries"],
        },
        "comparisons": entries,
        "not_evaluated": not_evaluated,
        "settings": values,
    }


def intervals_note(cfg: EvaluateParams) -> dict[str, Any]:
    """Which metrics of test.json carry which interval."""
    return {
        "verdict": [*POPULATION_METRICS, *(RARE_PREFIX + e for e in RARE_ENDPOINTS)],
        "verdict_method": VERDICT,
        "descriptive_method": DESCRIPTIVE.format(
            draws=cfg.bootstrap,
            strata=", within each class" if cfg.stratify else "",
            min_patients=cfg.min_patients_for_bootstrap,
        ),
        "rare": "rare_<endpoint>: mean over the rare-class patients of each one's value",
    }


def flat_settings(
    agg: dict[str, dict[str, Any]],
    values: dict[str, dict[str, Any]],
    verdict_vs_baseline: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """test.json's settings: every available setting's metrics with ``_lo``/``_hi``."""
    out: dict[str, dict[str, Any]] = {}
    for key, e in agg.items():
        if "unavailable" in e:
            continue
        flat: dict[str, Any] = {
            "strategy": e["strategy"],
            "architecture": e["architecture"],
            "seeds": e["seeds"],
        }
        for m, s in e.items():
            if isinstance(s, dict) and "value" in s:
                flat[m], flat[f"{m}_lo"], flat[f"{m}_hi"] = s["value"], s["lo"], s["hi"]
        for name, v in values[key].items():
            m = name if name in POPULATION_METRICS else RARE_PREFIX + name
            iv = v["interval"]
            flat[m], flat[f"{m}_lo"], flat[f"{m}_hi"] = v["estimate"], iv["lo"], iv["hi"]
        flat["decision"] = verdict_vs_baseline.get(key, "baseline")
        out[key] = flat
    return out


def _round(x: Any) -> Any:
    return round(x, SUMMARY_DIGITS) if isinstance(x, float) else x


def headline(
    document: dict[str, Any],
    flat: dict[str, dict[str, Any]],
    baseline: str,
    chosen: str,
    placebo: str,
) -> dict[str, Any]:
    """metrics/summary.json: the primary, the placebo's verdict, the baseline of the primary's
    architecture and the setting the final model refits (its cross-validated estimate)."""
    primary = document["primary"]
    e, arch = primary["endpoint"], primary["architecture"]
    d = primary["decision"] or {}
    base = flat.get(setting_key(baseline, arch), {})
    final = flat.get(chosen, {})
    return {
        "primary": {
            "spec": [primary["strategy"], primary["control"], arch, e],
            "diff": _round(d.get("estimate")),
            "lo": _round(d.get("lo")),
            "hi": _round(d.get("hi")),
            "p": _round(d.get("p_value")),
            "verdict": d.get("verdict", NOT_EVALUATED),
        },
        "placebo": placebo,
        "baseline": {
            "acc": _round(base.get("accuracy")),
            "f1": _round(base.get("f1_macro")),
            e: _round(base.get(RARE_PREFIX + e)),
        },
        "final": {"acc": _round(final.get("accuracy")), "f1": _round(final.get("f1_macro"))},
    }


def vs_baseline(
    document_decisions: dict[str, Any], comparisons: dict[str, Comparison], baseline: str
) -> dict[str, str]:
    """setting -> its verdict against the baseline of its architecture."""
    return {
        setting_key(c.strategy, c.architecture): direction(document_decisions[name])
        for name, c in comparisons.items()
        if c.control == baseline
    }
