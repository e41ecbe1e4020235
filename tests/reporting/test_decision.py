"""The decision section: the primary and the placebo first, every comparison with exact and Holm
p, chance in the family, per-patient differences, and the MDD / study size from the placebo."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.decision import TITLE
from tests.reporting.helpers import build, p1, read, row, section, signed, write


def _iv(d: dict) -> str:
    return f"{signed(d['estimate'])} [{p1(d['interval']['lo'])}, {p1(d['interval']['hi'])}]"


def test_the_primary_and_the_placebo_lead_with_their_numbers(cv_run):
    t = load_params(cv_run / "params.yaml").base.target_class
    document = read(cv_run, "metrics/comparison.json")
    pr, d = document["primary"], document["primary"]["decision"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert part.lstrip().startswith("**Primary comparison**")
    first = part.lstrip().split("\n\n")[0]
    assert f"`{pr['name']}` on {t} {pr['endpoint']}" in first
    assert f"Difference {signed(d['estimate'])} [{p1(d['lo'])}, {p1(d['hi'])}] points" in first
    assert f"exact patient-level sign-flip p = {d['p_value']:.4f}" in first
    assert f"**Verdict: {d['verdict']}**: {d['reason']}" in first
    paired = document["comparisons"][pr["name"]]["rare"][pr["endpoint"]]
    assert paired["interval"]["method"] in first and paired["test"]["method"] in first
    assert part.index("**Primary comparison**") < part.index("**Placebo**")
    assert part.index("**Placebo**") < part.index("| Strategy vs control |")
    for arch, p in document["placebos"].items():
        if "not_run" in p:
            assert f"`{arch}`: **no placebo could be run**: {p['not_run']}" in part
        else:
            assert f"`{arch}` (seeds " in part and f"**{p['verdict']}**" in part


def test_every_comparison_with_its_exact_and_holm_p_and_verdict(cv_run):
    document = read(cv_run, "metrics/comparison.json")
    e = document["primary"]["endpoint"]
    assert document["comparisons"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    for c in document["comparisons"].values():
        got = row(part, f"{c['strategy']} vs {c['control']}", c["architecture"])
        d = c["decision"]
        assert got[2:6] == [
            d["role"],
            _iv(c["rare"][e]),
            f"{c['rare'][e]['test']['p_value']:.4f}",
            f"{c['p_holm'][e]:.4f}",
        ]
        assert got[-1] == f"**{d['verdict']}**"
        assert f"**{d['verdict']}**: {d['reason']}" in part


def test_chance_in_the_family_and_the_per_patient_differences(cv_run):
    document = read(cv_run, "metrics/comparison.json")
    fam, e = document["family"], document["primary"]["endpoint"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert f"The family holds {fam['m']} secondary comparison" in part
    assert f"about {fam['chance']['expected_helps_unadjusted']:.2f} 'helps' by chance" in part
    assert f"Secondaries that 'help' here: {fam['helps_among_secondaries']}." in part
    for name, c in document["comparisons"].items():
        per = c["rare"][e]["per_patient"]
        got = row(part, name)
        assert got[1:] == [signed(per[p]) for p in per]


def test_mdd_and_study_size_come_from_the_placebo_with_assumptions(cv_run):
    document = read(cv_run, "metrics/comparison.json")
    mdd, size = document["mdd"], document["sample_size"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    if "not_run" in mdd:
        assert "**What this design can detect**: not estimated" in part
        return
    assert "from the placebo's noise floor, not from any comparison's own spread" in part
    assert f"{mdd['seeds'][0]} vs {mdd['seeds'][1]} runs" in part
    assert (
        f"is {p1(mdd['value'])} points." in part
        if mdd["value"] is not None
        else "infinite: the exact test cannot reach alpha" in part
    )
    for a in mdd["assumptions"]:
        assert f"- {a}" in part
    if size:
        for o in size["options"]:
            got = row(part, str(o["seeds"]))
            assert got[1] == (str(o["patients"]) if o["patients"] is not None else "none")
    assert "reference_gain" not in part and "square root of the patients" not in part


def test_without_a_placebo_no_mdd_is_stated_and_the_report_says_why(cv_run):
    data = read(cv_run, "metrics/comparison.json")
    why = "baseline-resnet has seeds [0]: a placebo needs at least 2 distinct seeds"
    data["placebos"] = {"resnet": {"not_run": why}}
    data["placebo"] = data["placebos"]["resnet"]
    data["mdd"], data["sample_size"] = {"not_run": f"no placebo, so no noise floor: {why}"}, None
    write(cv_run, "metrics/comparison.json", data)
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert f"`resnet`: **no placebo could be run**: {why}." in part
    assert "**What this design can detect**: not estimated: no placebo, so no noise floor" in part


def test_a_primary_that_could_not_be_evaluated_says_why(cv_run):
    data = read(cv_run, "metrics/comparison.json")
    data["primary"].update(decision=None, not_evaluated="generator g is blocked in fold 1")
    write(cv_run, "metrics/comparison.json", data)
    _, text = build(cv_run)
    assert "**not evaluated**: generator g is blocked in fold 1." in section(text, TITLE)
