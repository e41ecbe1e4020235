"""Table 3 (intervals over patients and seeds, the rare class's AUROC and AP beside recall), the
differences with the baseline, every seed's value and the study's numbers beside ours."""

from __future__ import annotations

import yaml

from lusaug.core.config import load_params
from lusaug.reporting.reference import STUDY_REFERENCE
from lusaug.reporting.table3 import DIFF_TITLE, SEED_TITLE, TITLE, table3_metrics
from tests.reporting.helpers import build, p1, read, row, rows, section, signed, write


def _interval(v: dict, m: str) -> str:
    return f"{p1(v[m])} [{p1(v[m + '_lo'])}, {p1(v[m + '_hi'])}]"


def test_table3_cells_are_test_json_values_and_intervals(cv_run):
    params = load_params(cv_run / "params.yaml")
    metrics = [m for m, _ in table3_metrics(params.base.target_class)]
    settings = read(cv_run, "metrics/test.json")["settings"]
    _, text = build(cv_run)
    table = section(text, TITLE).split(f"### {DIFF_TITLE}")[0]
    order = [c[0] for c in rows(table, *[]) if c[0] not in ("Strategy", "---")]
    assert order[0] == params.evaluate.baseline
    assert sorted(order) == sorted(params.train.strategies)
    assert "rare_recall" in metrics and "rare_auroc" in metrics and "rare_ap" in metrics
    for s in order:
        expected = [s]
        for a in params.train.architectures:
            v = settings.get(f"{s}-{a}")
            expected += [_interval(v, m) if v else "-" for m in metrics]
        assert row(table, s) == expected


def test_planned_settings_absent_from_test_json_are_flagged_with_the_reason(cv_run):
    params = load_params(cv_run / "params.yaml")
    data = read(cv_run, "metrics/test.json")
    gen_strategy = next(s for s in params.train.strategies if "-" in s)  # synthetic*-<G>
    generator = gen_strategy.split("-", 1)[1]
    arch = next(iter(params.train.architectures))
    del data["settings"][f"{gen_strategy}-{arch}"]
    write(cv_run, "metrics/test.json", data)
    rel = f"metrics/fold-{params.split.folds[0]}/synthetic_{generator}.json"
    metrics = read(cv_run, rel)
    metrics.update(blocked=True, blocked_reason="memorisation rate 0.200 > 0.05")
    write(cv_run, rel, metrics)
    _, text = build(cv_run)
    table = section(text, TITLE)
    assert row(table, gen_strategy)[1] == "-"
    assert "**Planned but not evaluated** (1 setting" in table
    assert (
        f"`{gen_strategy}-{arch}`: fold {params.split.folds[0]}: {generator} blocked "
        "(memorisation rate 0.200 > 0.05)" in table
    )


def _diff(d: dict) -> str:
    return f"{signed(d['estimate'])} [{p1(d['interval']['lo'])}, {p1(d['interval']['hi'])}]"


def test_differences_with_the_baseline_are_comparison_json(cv_run):
    params = load_params(cv_run / "params.yaml")
    comparisons = read(cv_run, "metrics/comparison.json")["comparisons"]
    vs_base = [e for e in comparisons.values() if e["control"] == params.evaluate.baseline]
    assert vs_base
    _, text = build(cv_run)
    table = section(text, DIFF_TITLE)
    for e in vs_base:
        got = row(table, e["strategy"], e["architecture"])
        pop, rare = e["population"], e["rare"]
        assert got[2:] == [
            _diff(pop["accuracy"]),
            _diff(pop["f1_macro"]),
            _diff(rare["recall"]),
            _diff(rare["auroc"]),
            _diff(rare["ap"]),
            e["decision"]["verdict"],
        ]


def test_every_seeds_value_of_every_setting(cv_run):
    params = load_params(cv_run / "params.yaml")
    values = read(cv_run, "metrics/comparison.json")["settings"]
    _, text = build(cv_run)
    table = section(text, SEED_TITLE)
    for key, v in values.items():
        s, _, a = key.rpartition("-")
        got = row(table, s, a)
        assert got[2] == ", ".join(map(str, params.train.seeds_of(s, a)))
        assert got[3] == ", ".join(p1(x) for x in v["accuracy"]["per_seed"])
        assert got[4] == ", ".join(p1(x) for x in v["f1_macro"]["per_seed"])
        assert got[5] == ", ".join(p1(x) for x in v["recall"]["per_seed"])
        assert len(v["recall"]["per_seed"]) == len(params.train.seeds_of(s, a))


def test_the_matched_control_is_listed_next_to_its_synthetic_strategy(cv_run):
    params = load_params(cv_run / "params.yaml")
    _, text = build(cv_run)
    table = section(text, TITLE).split(f"### {DIFF_TITLE}")[0]
    order = [c[0] for c in rows(table, *[]) if c[0] not in ("Strategy", "---")]
    for s in params.train.strategies:
        if s.startswith("oversample_matched-"):
            twin = "synthetic-" + s.split("-", 1)[1]
            assert order.index(s) == order.index(twin) + 1


def test_study_numbers_beside_ours_with_caveats(cv_run):
    settings = read(cv_run, "metrics/test.json")["settings"]
    _, text = build(cv_run)
    part = section(text, "The study's numbers beside ours")
    assert "444 test frames (regular 195, covid 112, pneumonia 121, viral 16)" in part
    assert "data version, the frames and the scale differ" in part
    assert "without intervals" in part and "test frames included" in part
    for ref in STUDY_REFERENCE["settings"]:
        for fam, values in ref["values"].items():
            got = row(part, f"{ref['label']} ({STUDY_REFERENCE['models'][fam]})")
            ours = settings.get(f"{ref['strategy']}-{fam}")
            for i, m in enumerate(("accuracy", "f1_macro", "precision_macro")):
                assert got[3 + 2 * i] == (f"{values[m]:.2f}" if m in values else "-")
                assert got[4 + 2 * i] == (p1(ours[m]) if ours else "not run")


def test_a_callers_reference_replaces_the_study(cv_run):
    custom = {
        **STUDY_REFERENCE,
        "settings": [
            {"label": "Mine", "strategy": "baseline", "values": {"vit": {"accuracy": 12.34}}}
        ],
    }
    _, text = build(cv_run, reference=custom)
    assert "| Mine (ViT) | baseline | vit | 12.34 |" in text and "76.57" not in text


def test_leaky_generator_rows_are_marked(cv_run):
    path = cv_run / "params.yaml"
    data = yaml.safe_load(path.read_text())
    leaky_g = next(g for g in data["generate"]["generators"] if "leaky" in g)
    strategy = f"synthetic-{leaky_g}"
    data["generate"]["enabled"].append(leaky_g)
    data["train"]["strategies"].append(strategy)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    test = read(cv_run, "metrics/test.json")
    for a in data["train"]["architectures"]:  # as if the run had trained it too
        test["settings"][f"{strategy}-{a}"] = test["settings"][f"baseline-{a}"]
    write(cv_run, "metrics/test.json", test)
    _, text = build(cv_run)
    table = section(text, TITLE)
    assert row(table, f"{strategy} (leaky)")[1:] == row(table, "baseline")[1:]
    assert f"(leaky) marks `{strategy}`" in table
    assert "| baseline (leaky) |" not in text
