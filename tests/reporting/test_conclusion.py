"""The written conclusion verbatim, the primary, the placebo and every comparison grouped by
verdict."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.conclusion import GENERATED_TITLE, TITLE
from tests.reporting.helpers import build, read, section, write


def _line(text: str, start: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(start))


def test_conclusion_verbatim_and_statements_grouped_by_verdict(cv_run, tmp_path):
    t = load_params(cv_run / "params.yaml").base.target_class
    data = read(cv_run, "metrics/comparison.json")
    comp = data["comparisons"]
    names = sorted(comp)
    helps, hurts = names[0], names[1]
    comp[helps]["decision"]["verdict"] = "helps"
    comp[hurts]["decision"]["verdict"] = "hurts"
    write(cv_run, "metrics/comparison.json", data)
    note = tmp_path / "conclusion.md"
    note.write_text("Oversampling helps **viral** | not covid.\n\n- second *point*\n")
    _, text = build(cv_run, conclusion=note)
    part = section(text, TITLE)
    assert part.startswith("\nOversampling helps **viral** | not covid.\n\n- second *point*\n")
    generated = section(text, GENERATED_TITLE)

    def label(c: dict) -> str:
        return f"{c['strategy']} vs {c['control']} ({c['architecture']})"

    line = _line(generated, f"- **Helps** ({t})")
    assert label(comp[helps]) in line and label(comp[hurts]) not in line
    assert label(comp[hurts]) in _line(generated, f"- **Hurts** ({t})")
    words = {"helps": "Helps", "hurts": "Hurts", "cannot be shown": "Cannot be shown",
             "no evidence of help": "No evidence"}  # fmt: skip
    for c in comp.values():  # the run's own verdicts, whichever they are
        assert label(c) in _line(generated, f"- **{words[c['decision']['verdict']]}** ({t})")
    pr = data["primary"]
    primary = _line(generated, "- **Primary**")
    assert f"`{pr['name']}`" in primary and f"**{pr['decision']['verdict']}**" in primary
    assert f"exact p = {pr['decision']['p_value']:.4f}" in primary
    placebo = _line(generated, "- **Placebo**")
    for arch, p in data["placebos"].items():
        assert f"`{arch}` {p.get('verdict', 'not run')}" in placebo
    chance = _line(generated, "- **Chance**")
    assert f"of {data['family']['m']} secondary comparisons" in chance


def test_no_conclusion_file_says_how_to_add_one(cv_run):
    _, text = build(cv_run)
    assert "`lusaug report --conclusion FILE`" in section(text, TITLE)
