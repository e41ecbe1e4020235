"""The decision per strategy x family and what this sample size can detect."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.decision import TITLE
from tests.reporting.helpers import build, p1, read, row, section, signed, write


def test_verdict_per_strategy_and_family_with_its_reason(cv_run):
    t = load_params(cv_run / "params.yaml").base.target_class
    comparisons = read(cv_run, "metrics/comparison.json")["comparisons"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    for e in comparisons.values():
        got = row(part, e["strategy"], e["architecture"])
        d = e[f"recall_{t}"]
        assert got[2:5] == [
            f"**{e['decision']}**",
            e["decision_reason"],
            f"{signed(d['diff'])} [{p1(d['lo'])}, {p1(d['hi'])}]",
        ]
        assert got[5] == ("n/a (no spread)" if d["mdd"] == 0 else p1(d["mdd"]))


def test_minimum_detectable_difference_and_patients_needed(cv_run):
    t = load_params(cv_run / "params.yaml").base.target_class
    mdd = read(cv_run, "metrics/comparison.json")["mdd"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert f"({mdd['patients']} patients, " in part
    assert f"is {p1(mdd['accuracy'])} accuracy points, {p1(mdd['f1_macro'])} macro-F1" in part
    assert f"{p1(mdd[f'recall_{t}'])} {t}-recall points" in part
    needed = mdd["patients_needed_for_reference_gain"]
    if needed:
        assert f"about {needed} patients ({mdd[f'{t}_patients_needed_for_reference_gain']}" in part
        assert f"a gain of {100 * mdd['reference_gain']:.2f} accuracy points" in part


def test_an_undefined_mdd_says_so(cv_run):
    data = read(cv_run, "metrics/comparison.json")
    data["mdd"]["patients_needed_for_reference_gain"] = None
    write(cv_run, "metrics/comparison.json", data)
    _, text = build(cv_run)
    assert "No number of patients needed for the reference gain" in section(text, TITLE)
