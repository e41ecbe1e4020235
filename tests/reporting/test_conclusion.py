"""The written conclusion verbatim, the statements grouped by verdict, the fixed changes."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.conclusion import GENERATED_TITLE, TITLE
from tests.reporting.helpers import build, read, section, write


def _line(text: str, start: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(start))


def test_conclusion_verbatim_and_statements_grouped_by_verdict(cv_run, tmp_path):
    params = load_params(cv_run / "params.yaml")
    t, arch = params.base.target_class, next(iter(params.train.architectures))
    data = read(cv_run, "metrics/comparison.json")
    comp = data["comparisons"]
    mine = [k for k, e in comp.items() if e["architecture"] == arch]
    better, worse = mine[0], mine[1]
    comp[better]["f1_macro"].update(diff=0.08, lo=0.02, hi=0.15, verdict="better")
    comp[worse]["f1_macro"].update(diff=-0.1, lo=-0.2, hi=-0.01, verdict="worse")
    comp[better]["decision"] = "helps"
    comp[worse]["decision"] = "does not help"
    write(cv_run, "metrics/comparison.json", data)
    note = tmp_path / "conclusion.md"
    note.write_text("Oversampling helps **viral** | not covid.\n\n- second *point*\n")
    _, text = build(cv_run, conclusion=note)
    part = section(text, TITLE)
    assert part.startswith("\nOversampling helps **viral** | not covid.\n\n- second *point*\n")
    generated = section(text, GENERATED_TITLE)
    s_better, s_worse = comp[better]["strategy"], comp[worse]["strategy"]
    helps = _line(generated, f"- **Helps {t}**")
    assert f"{s_better} ({arch})" in helps and f"{s_worse} ({arch})" not in helps
    assert f"{s_worse} ({arch})" in _line(generated, f"- **Does not help {t}**")
    line = _line(generated, f"- **{arch}, macro-F1**")
    assert f"better: {s_better} (+8.0 [2.0, 15.0])" in line
    assert f"worse: {s_worse} (-10.0 [-20.0, -1.0])" in line
    noise = [
        e["strategy"]
        for k, e in comp.items()
        if e["architecture"] == arch
        and e["f1_macro"]["verdict"] == "not significant"
        and not e["f1_macro"]["diff"] == e["f1_macro"]["lo"] == e["f1_macro"]["hi"] == 0
    ]
    within = line.split("within noise: ", 1)[1].split(". ", 1)[0]
    assert all(f"{s} (" in within for s in noise) and f"{s_better} (" not in within


def test_identical_outcomes_are_not_called_noise(cv_run):
    params = load_params(cv_run / "params.yaml")
    t, arch = params.base.target_class, next(iter(params.train.architectures))
    data = read(cv_run, "metrics/comparison.json")
    key = next(k for k, e in data["comparisons"].items() if e["architecture"] == arch)
    data["comparisons"][key][f"recall_{t}"].update(
        diff=0.0, lo=0.0, hi=0.0, verdict="not significant"
    )
    write(cv_run, "metrics/comparison.json", data)
    _, text = build(cv_run)
    line = _line(section(text, GENERATED_TITLE), f"- **{arch}, {t} recall**")
    strategy = data["comparisons"][key]["strategy"]
    assert "identical in every draw: " in line
    assert strategy in line.split("identical in every draw: ", 1)[1]


def test_no_conclusion_file_says_how_to_add_one(cv_run):
    _, text = build(cv_run)
    assert "`lusaug report --conclusion FILE`" in section(text, TITLE)
