"""One row per rare-class patient, its recall per strategy from metrics/rare_patients.json."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.patients import title
from tests.reporting.helpers import build, p1, read, rows, section


def test_one_row_per_rare_patient_with_its_recall_per_strategy(cv_run):
    params = load_params(cv_run / "params.yaml")
    rare = read(cv_run, "metrics/rare_patients.json")
    _, text = build(cv_run)
    part = section(text, title(params.base.target_class))
    for a in params.train.architectures:
        block = part.split(f"**{a}**", 1)[1].split("\n\n", 2)[1]
        header = block.splitlines()[0]
        strategies = [c.strip() for c in header.strip("|").split("|")][4:]
        body = [r for r in rows(block) if r[0] not in ("Patient", "---")]
        assert [r[0] for r in body] == [p["patient_id"] for p in rare["patients"]]
        for got, p in zip(body, rare["patients"], strict=True):
            assert got[1:4] == [str(p["fold"]), str(p["frames"]), str(p["videos"])]
            assert got[4:] == [p1(p["recall"].get(f"{s}-{a}")) for s in strategies]
    assert f"{len(rare['patients'])} {params.base.target_class} patients" in part
