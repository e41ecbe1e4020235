"""The study write-up from a finished run: built from the committed outputs of the default run.

The metrics and reports JSONs of the default `make run` are in git; plots/ is DVC-cached and absent
on a fresh clone, so the figures are small PNGs written here (one of them too big on purpose).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.config import (
    PLAIN_STRATEGIES,
    PROJ_ROOT,
    SYNTHETIC_PREFIX,
    deep_merge,
    load_params,
    params_from_dict,
)
from lusaug.reporting.study import (
    EVALUATE_FIGURES,
    FIGURE_MAX_BYTES,
    GENERATOR_FIGURES,
    STUDY_REFERENCE,
    ReportError,
    build_study_report,
    planned_settings,
    read_stage_costs,
)

# Committed outputs of the default run the write-up reads (plots/ are made below).
RUN_FILES = (
    "params.yaml",
    "params/tuned.yaml",
    "metrics",
    "reports/split.json",
    "reports/ingest.json",
    "reports/onnx_parity.json",
    "models/registered.json",
)
TABLE3 = ("accuracy", "f1_macro", "precision_macro", "recall_{t}", "video_accuracy")
COMPARED = ("accuracy", "f1_macro", "precision_macro", "recall_{t}", "video_accuracy")


def _fmt(x: float) -> str:
    return f"{100 * x:.1f}".replace("-0.0", "0.0")


def _png(path: Path, size: tuple[int, int] = (40, 30), noise: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    if noise:  # incompressible: several MB as a PNG
        arr = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    else:
        arr = np.full((*size[::-1], 4), 255, np.uint8)
        arr[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
    Image.fromarray(arr).save(path)


@pytest.fixture()
def run_repo(tmp_path: Path) -> Path:
    """A copy of the default run's committed outputs plus small figures under plots/."""
    missing = [f for f in RUN_FILES if not (PROJ_ROOT / f).exists()]
    if missing or not (PROJ_ROOT / "metrics" / "test.json").exists():
        pytest.skip(f"committed run outputs absent from {PROJ_ROOT}: {missing or 'test.json'}")
    repo = tmp_path / "run"
    for f in RUN_FILES:
        src, dst = PROJ_ROOT / f, repo / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    target = load_params(repo / "params.yaml").base.target_class
    figs = repo / "plots" / "evaluate" / "figures"
    for name, _ in EVALUATE_FIGURES:
        _png(figs / name.format(target=target))
    _png(figs / "confusion_grid.png", (900, 700), noise=True)  # > FIGURE_MAX_BYTES
    for path in (repo / "metrics").glob("synthetic_*.json"):
        for name in GENERATOR_FIGURES:
            _png(repo / "plots" / "synthetic" / path.stem.removeprefix("synthetic_") / name)
    _png(repo / "plots" / "tune" / "optimization_history.png")
    return repo


def _build(repo: Path, **kw) -> tuple[Path, str]:
    out = repo / "docs" / "results.md"
    args = {"title": "", "costs_log": None, "conclusion": None, "reference": None, **kw}
    build_study_report(repo, out, repo / "docs" / "img" / "study", **args)
    return out, out.read_text()


def _row(text: str, first: str, second: str | None = None) -> list[str]:
    """Cells of the table row whose first (and second) cell match."""
    for line in text.splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == first and (second is None or cells[1] == second):
            return cells
    raise AssertionError(f"no table row {first!r} {second or ''}")


def _test_json(repo: Path) -> dict:
    return json.loads((repo / "metrics" / "test.json").read_text())


def test_table3_rows_hold_test_json_values_in_strategy_order(run_repo):
    params = load_params(run_repo / "params.yaml")
    t = params.base.target_class
    _, text = _build(run_repo)
    settings = _test_json(run_repo)["settings"]
    archs = [a for a in params.train.architectures if any(k.endswith(f"-{a}") for k in settings)]
    strategies = {k.rpartition("-")[0] for k in settings}
    assert len(strategies) >= 2
    for s in strategies:
        cells = _row(text, s)
        expected = [s]
        for a in archs:
            v = settings[f"{s}-{a}"]
            for m in (m.format(t=t) for m in TABLE3):
                expected.append(f"{_fmt(v[m])} [{_fmt(v[m + '_lo'])}, {_fmt(v[m + '_hi'])}]")
        assert cells == expected
    section = text.split("## Test metrics", 1)[1].split("## Paired", 1)[0]
    order = [line.split(" | ")[0].strip("| ") for line in section.splitlines() if "[" in line]
    known = [
        "baseline",
        "class_weights",
        "class_weights_norm",
        "class_weights_tuned",
        "oversample",
        *(SYNTHETIC_PREFIX + g for g in params.train.generators),
    ]
    assert order == [s for s in known if s in strategies] + sorted(set(strategies) - set(known))


def test_differences_and_verdicts_copied_verbatim(run_repo):
    t = load_params(run_repo / "params.yaml").base.target_class
    comparison = json.loads((run_repo / "metrics" / "comparison.json").read_text())
    assert comparison
    _, text = _build(run_repo)
    for entry in comparison.values():
        cells = _row(text, entry["strategy"], entry["architecture"])
        for cell, m in zip(cells[2:], (m.format(t=t) for m in COMPARED), strict=False):
            d = entry[m]
            diff = f"{100 * d['diff']:+.1f}".replace("+0.0", "0.0").replace("-0.0", "0.0")
            assert cell == f"{diff} [{_fmt(d['lo'])}, {_fmt(d['hi'])}] — {d['verdict']}"
        seeds = cells[-1].split(", ")
        assert len(seeds) == len(entry["seed_diffs_f1_macro"])
    assert "not estimable (" in text or all(
        not e[f"recall_{t}"]["verdict"].startswith("not estimable") for e in comparison.values()
    )


def test_reference_numbers_beside_ours(run_repo):
    _, text = _build(run_repo)
    section = text.split("## The study's numbers beside ours", 1)[1].split("\n## ", 1)[0]
    for value in (
        "76.57",
        "74.59",
        "75.23",
        "71.84",
        "70.83",
        "71.02",
        "75.90",
        "68.91",
        "78.82",
        "76.80",
        "76.66",
        "70.72",
        "71.07",
        "74.14",
        "66.89",
    ):
        assert value in section
    assert "444 test frames (regular 195, covid 112, pneumonia 121, viral 16)" in section
    assert "data version, the frames and the scale differ" in section
    base = _test_json(run_repo)["settings"]["baseline-resnet"]
    cells = _row(section, "Baseline (ResNet50)")
    assert cells[3:9] == [
        "76.57",
        _fmt(base["accuracy"]),
        "74.59",
        _fmt(base["f1_macro"]),
        "75.23",
        _fmt(base["precision_macro"]),
    ]
    # a caller's own reference replaces the constant
    custom = {
        **STUDY_REFERENCE,
        "settings": [
            {"label": "Mine", "strategy": "baseline", "values": {"vit": {"accuracy": 12.34}}}
        ],
    }
    _, text = _build(run_repo, reference=custom)
    assert "| Mine (ViT) | baseline | vit | 12.34 |" in text and "76.57" not in text


def test_figures_copied_small_and_linked(run_repo):
    out, text = _build(run_repo)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    generators = [
        p.stem.removeprefix("synthetic_") for p in (run_repo / "metrics").glob("synthetic_*.json")
    ]
    assert len(links) == len(EVALUATE_FIGURES) + len(GENERATOR_FIGURES) * len(generators) + 1
    for link in links:
        path = (out.parent / link).resolve()
        assert path.is_file() and (run_repo / "docs" / "img" / "study") in path.parents
        assert "plots/" not in link
    big = run_repo / "docs" / "img" / "study" / "confusion_grid.png"
    assert big.stat().st_size <= FIGURE_MAX_BYTES
    with Image.open(big) as im:
        assert im.width < 900 and im.height < 700
    small_src = run_repo / "plots" / "tune" / "optimization_history.png"
    small = run_repo / "docs" / "img" / "study" / "tune" / "optimization_history.png"
    with Image.open(small_src) as a, Image.open(small) as b:  # re-encoded losslessly
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    for g in generators:  # real and kept grids side by side
        assert (
            f"| ![real frames](img/study/{g}/real_grid.png) | "
            f"![kept synthetic](img/study/{g}/kept_grid.png) |" in text
        )


def _costs_file(path: Path) -> Path:
    lines = [
        {
            "script": "frames",
            "argv": ["data/raw"],
            "started": 1000.0,
            "wall_s": 10.0,
            "peak_rss_mb": 200.0,
        },
        {
            "script": "train",
            "argv": [
                "data/splits.csv",
                "--strategy",
                "baseline",
                "--arch",
                "resnet",
                "--seed",
                "0",
            ],
            "started": 1012.0,
            "wall_s": 60.0,
            "peak_rss_mb": 900.5,
        },
        {
            "script": "train",
            "argv": [
                "data/splits.csv",
                "--strategy",
                "oversample",
                "--arch",
                "vit",
                "--seed",
                "2",
            ],
            "started": 1075.0,
            "wall_s": 95.5,
            "peak_rss_mb": 700.0,
        },
        {
            "script": "train",
            "argv": ["data/splits.csv", "--strategy", "baseline", "--arch", "vit", "--seed", "1"],
            "started": 1172.0,
            "wall_s": 30.0,
            "peak_rss_mb": 1200.0,
        },
    ]
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"script": "evaluate", "argv"\n'
    path.write_text(text)
    return path


def test_stage_costs_aggregate_per_script(run_repo, tmp_path):
    log = _costs_file(tmp_path / "stage_costs.jsonl")
    c = read_stage_costs(log)
    assert [s.script for s in c.stages] == ["frames", "train"]
    train = c.stages[1]
    assert (train.count, train.total_wall_s, train.max_wall_s, train.max_peak_rss_mb) == (
        3,
        185.5,
        95.5,
        1200.0,
    )
    assert train.slowest == "oversample-vit-2"
    assert c.wall_clock_s == pytest.approx(1202.0 - 1000.0) and c.bad_lines == 1
    _, text = _build(run_repo, costs_log=log)
    assert _row(text, "train") == [
        "train",
        "3",
        "3 min 06 s",
        "1 min 36 s (oversample-vit-2)",
        "1,200",
    ]
    assert _row(text, "**all**", "4")[2] == "3 min 16 s"
    assert "3 min 22 s of wall clock" in text and "1 unreadable line skipped" in text


def test_missing_optional_inputs_are_named(run_repo):
    for f in [
        *(run_repo / "metrics").glob("synthetic_*.json"),
        run_repo / "reports/onnx_parity.json",
        run_repo / "models/registered.json",
        run_repo / "params/tuned.yaml",
        run_repo / "reports/split.json",
        run_repo / "metrics/validation.json",
    ]:
        f.unlink()
    shutil.rmtree(run_repo / "plots")
    _, text = _build(run_repo, costs_log=run_repo / "logs" / "nothing.jsonl")
    for expected in (
        "no metrics/synthetic_<G>.json",
        "reports/onnx_parity.json is missing",
        "models/registered.json is missing",
        "params/tuned.yaml is missing",
        "reports/split.json is missing",
        "metrics/validation.json is missing",
        "nothing.jsonl does not exist",
        "confusion_grid.png is missing",
    ):
        assert expected in text
    assert "## Test metrics per strategy" in text  # the core table is still there


def test_missing_test_json_is_an_error_naming_it(run_repo):
    (run_repo / "metrics" / "test.json").unlink()
    with pytest.raises(ReportError, match=r"metrics/test\.json not found"):
        _build(run_repo)
    assert not (run_repo / "docs" / "results.md").exists()


def _set_params(repo: Path, section: str, key: str, value) -> None:
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data[section][key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_leaky_generator_rows_are_marked(run_repo):
    path = run_repo / "metrics" / "test.json"
    data = json.loads(path.read_text())
    params = load_params(run_repo / "params.yaml")
    for a in params.train.architectures:  # as if the run had trained synthetic-ddpm_all_leaky too
        data["settings"][f"synthetic-ddpm_all_leaky-{a}"] = data["settings"][f"baseline-{a}"]
    path.write_text(json.dumps(data))
    _set_params(run_repo, "train", "generators", [*params.train.generators, "ddpm_all_leaky"])
    assert load_params(run_repo / "params.yaml").generate.generators["ddpm_all_leaky"].leaky
    _, text = _build(run_repo)
    cells = _row(text, "synthetic-ddpm_all_leaky (leaky)")
    assert cells[1] == _row(text, "baseline")[1]
    assert "(leaky) marks `synthetic-ddpm_all_leaky`" in text
    assert "| baseline (leaky) |" not in text


def test_outputs_left_over_from_other_params_are_refused_or_left_out(run_repo):
    params = load_params(run_repo / "params.yaml")
    run_generators = sorted({*params.generate.enabled, *params.train.generators})
    assert run_generators, "the default params enable generators"
    # a metrics file of a generator these params do not run (DVC leaves it behind): left out, named
    stale = next(g for g in params.generate.generators if g not in run_generators)
    metrics = run_repo / "metrics"
    shutil.copyfile(
        metrics / f"synthetic_{run_generators[0]}.json", metrics / f"synthetic_{stale}.json"
    )
    _, text = _build(run_repo)
    assert f"Left out (generator not in this run's params): metrics/synthetic_{stale}.json" in text
    assert f"### `{stale}`" not in text
    assert all(f"### `{g}`" in text for g in run_generators)
    # test.json from a run with other strategies (the pocus run before `evaluate` has run)
    extra = next(s for s in PLAIN_STRATEGIES if s not in params.train.strategies)
    _set_params(run_repo, "train", "strategies", [*params.train.strategies, extra])
    with pytest.raises(
        ReportError,
        match=rf"test\.json does not match params.yaml.*{extra}-resnet",
    ):
        _build(run_repo)


@pytest.mark.parametrize("profile", ["default", "pocus"])
def test_planned_settings_agree_with_evaluate(params_dict, profile):
    from lusaug.models.evaluate import planned_runs

    overlay = yaml.safe_load((PROJ_ROOT / "profiles" / f"{profile}.yaml").read_text()) or {}
    params = params_from_dict(deep_merge(params_dict, overlay))
    planned = planned_settings(params)
    assert planned == list(dict.fromkeys(f"{s}-{a}" for s, a, _ in planned_runs(params)))
    if profile == "pocus":  # the study's strategies, both families
        assert {"synthetic-ddpm_all-vit", "class_weights_tuned-resnet"} <= set(planned)


def test_conclusion_verbatim_and_interval_summary(run_repo, tmp_path):
    path = run_repo / "metrics" / "comparison.json"
    comp = json.loads(path.read_text())
    better, worse = "class_weights-resnet", "oversample-resnet"
    assert better in comp and worse in comp
    comp[better]["f1_macro"].update(diff=0.08, lo=0.02, hi=0.15, verdict="better")
    comp[worse]["f1_macro"].update(diff=-0.1, lo=-0.2, hi=-0.01, verdict="worse")
    path.write_text(json.dumps(comp))
    note = tmp_path / "conclusion.md"
    note.write_text("Oversampling helps **viral** | not covid.\n\n- second *point*\n")
    _, text = _build(run_repo, conclusion=note)
    assert "Oversampling helps **viral** | not covid.\n\n- second *point*\n" in text
    line = next(x for x in text.splitlines() if x.startswith("- **resnet, macro-F1**"))
    assert "better: class_weights (+8.0 [2.0, 15.0])" in line
    assert "worse: oversample (-10.0 [-20.0, -1.0])" in line
    noise = [
        k.rpartition("-")[0]
        for k, e in comp.items()
        if e["architecture"] == "resnet" and e["f1_macro"]["verdict"] == "not significant"
    ]
    within = line.split("within noise: ", 1)[1]
    assert all(s in within for s in noise) and "class_weights (" not in within
    t = load_params(run_repo / "params.yaml").base.target_class
    verdicts = {e[f"recall_{t}"]["verdict"] for e in comp.values()}
    recall_lines = [x for x in text.splitlines() if x.startswith(f"- **resnet, {t} recall**")]
    assert recall_lines and all(
        v in recall_lines[0] for v in verdicts if v.startswith("not estimable")
    )
    with pytest.raises(ReportError, match="nope.md"):
        _build(run_repo, conclusion=tmp_path / "nope.md")


def test_header_names_data_models_and_git_commit(run_repo):
    git = ["git", "-C", str(run_repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "run"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    params = load_params(run_repo / "params.yaml")
    split = json.loads((run_repo / "reports" / "split.json").read_text())
    _, text = _build(run_repo)
    head = text.split("## ", 1)[0]
    assert f"# Results of the `{params.base.profile}` profile run" in head
    assert f"`{sha}`" in head and "uncommitted" not in head
    assert f"{split['n_frames']} frames" in head and f"{split['n_patients']} patients" in head
    assert f"{params.base.image_size} px" in head
    for a in params.train.architectures.values():
        assert f"`{a.model}`" in head
    assert f"{params.evaluate.bootstrap} bootstrap resamples" in head


def test_cli_report(run_repo, tmp_path):
    runner = CliRunner()
    log = _costs_file(tmp_path / "costs.jsonl")
    out = tmp_path / "out" / "results.md"
    args = [
        "report",
        "--repo",
        str(run_repo),
        "--out",
        str(out),
        "--figures",
        str(tmp_path / "out" / "img"),
        "--title",
        "POCUS study",
        "--costs",
        str(log),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# POCUS study\n") and "| train | 3 |" in text
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    (run_repo / "metrics" / "test.json").unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "metrics/test.json not found" in result.output


def test_linked_patients_are_listed_with_their_reason(run_repo):
    """split.json's linked groups (patients kept together for near-identical frames) read as
    patients, split and the split stage's own reason, not as the group's dict keys."""
    split_json = run_repo / "reports" / "split.json"
    split = json.loads(split_json.read_text())
    reason = (
        "patients 192 and 198 were kept together because frames a.png and b.png are near-identical"
    )
    split["linked_patients"] = {
        "n_groups": 1,
        "n_linked_patients": 2,
        "hash_size": 16,
        "max_distance": 16,
        "groups": [
            {
                "patients": ["192", "198"],
                "split": ["train"],
                "labels": ["pneumonia"],
                "links": [{"patients": ["192", "198"], "reason": reason}],
            }
        ],
    }
    split["multi_class_patients"] = ["7"]
    split_json.write_text(json.dumps(split))
    _, text = _build(run_repo)
    assert f"- patients 192, 198 → train: {reason}" in text
    assert "labels, links" not in text
    assert "more than one class (their frames stay in one split): 7." in text
