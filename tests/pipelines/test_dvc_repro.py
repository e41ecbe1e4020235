"""End to end: the real `dvc repro` on the micro profile in a temporary copy of the repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lusaug.core.config import PROJ_ROOT, deep_merge, load_params, params_from_dict, parse_strategy
from lusaug.core.utils import EXECUTION_FILE, read_execution
from lusaug.data.manifest import MANIFEST_COLUMNS
from tests.pipelines.helpers import (
    BIN,
    assert_every_stage_wrote_its_outputs,
    micro_repo,
    run,
)

pytestmark = pytest.mark.slow
# the whole micro pipeline: ~20 min on 2 cores beside another test worker; helpers.run's 30-min
# default killed it once when the cores were shared with a third job
REPRO_TIMEOUT_S = 3600


@pytest.fixture(scope="module")
def repro_repo(tmp_path_factory) -> Path:
    repo = micro_repo(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro"], repo, timeout=REPRO_TIMEOUT_S)
    return repo


def test_every_stage_ran_and_wrote_its_outputs(repro_repo):
    assert_every_stage_wrote_its_outputs(repro_repo)


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _folds(repo: Path) -> list[int]:
    return _params(repo)["split"]["folds"]


def test_folds_test_every_rare_patient_once(repro_repo):
    frames = pd.read_csv(repro_repo / "data/frames.csv", dtype=str)
    assert list(frames.columns) == MANIFEST_COLUMNS
    params = _params(repro_repo)
    target = params["base"]["target_class"]
    assert set(frames["label"]) == set(params["base"]["classes"])
    tested: dict[str, list[int]] = {}
    for k in _folds(repro_repo):
        fold = pd.read_csv(repro_repo / f"data/splits/fold-{k}.csv", dtype=str)
        assert sorted(fold["path"].str.removeprefix("../")) == sorted(frames["path"])
        assert (fold.groupby("patient_id")["split"].nunique() == 1).all()
        for pid in fold.loc[fold["split"] == "test", "patient_id"].unique():
            tested.setdefault(pid, []).append(k)
        assert set(fold["split"]) == {"train", "val", "test"}
    assert all(len(v) == 1 for v in tested.values()) and set(tested) == set(frames["patient_id"])
    rare = frames.loc[frames["label"] == target, "patient_id"].unique()
    assert len(rare) >= len(_folds(repro_repo))  # micro: 3 viral patients over 2 test folds
    assert all(len(tested[p]) == 1 for p in rare)
    final = pd.read_csv(repro_repo / "data/splits/fold-final.csv", dtype=str)
    assert set(final["split"]) == {"train", "val"}
    validation = _json(repro_repo / "metrics/validation.json")
    assert validation["success"] is True and validation["n_folds"] == len(_folds(repro_repo))
    assert (repro_repo / "reports/validation/index.html").exists()


def _lock_md5(repo: Path, stage: str, path: str, section: str) -> str:
    """The md5 that dvc.lock records for ``path`` among a stage's deps or outs."""
    entries = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage][section]
    found = [e["md5"] for e in entries if e["path"] == path]
    assert found, f"dvc.lock: {stage} has no {section} entry {path}"
    return found[0]


def _finished_run(repo: Path, fold: int, name: str) -> dict:
    """A finished run folder's val_metrics.json (it also has weights and run.json, no last.pt)."""
    folder = repo / f"models/classifiers/fold-{fold}" / name
    for f in ("model.pt", "run.json", "val_metrics.json", "history.csv", "val_predictions.csv"):
        assert (folder / f).is_file(), f"fold {fold} {name}: {f} missing"
    assert not (folder / "last.pt").exists(), f"{name} did not finish"
    summary = _json(folder / "val_metrics.json")
    assert summary["run"] == name and summary["fold"] == fold
    return summary


def _mlflow_run(repo: Path, fold: int, name: str):
    from mlflow.tracking import MlflowClient

    info = read_execution(repo / f"models/classifiers/fold-{fold}" / name)
    run = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(
        info["mlflow_run_id"]
    )
    assert run.info.status == "FINISHED", (name, run.info.status)
    assert run.data.tags["fold"] == str(fold)
    return run


def test_micro_trains_every_kind_of_strategy():
    """The micro profile itself: every kind of strategy is part of the end-to-end run."""
    base = yaml.safe_load((PROJ_ROOT / "params.yaml").read_text())
    micro = deep_merge(base, yaml.safe_load((PROJ_ROOT / "profiles/micro.yaml").read_text()))
    kinds = {parse_strategy(s).kind for s in micro["train"]["strategies"]}
    assert kinds >= {
        "plain",
        "tuned",
        "synthetic",
        "replace",
        "synthetic_tuned",
        "only",
        "matched",
    }
    params = params_from_dict(micro)
    base = params.evaluate.baseline
    assert all(len(params.train.seeds_of(base, a)) >= 2 for a in params.train.architectures)
    pr = params.evaluate.primary
    assert parse_strategy(pr.control).kind == "matched"  # the primary is a same-share pair
    assert f"synthetic-{parse_strategy(pr.control).generator}" == pr.strategy


def test_synthetic_runs_trained_on_the_folds_own_kept_images(repro_repo):
    """synthetic-<G> adds fold k's kept images of G to the target class, and DVC tracked them."""
    params = _params(repro_repo)
    target = params["base"]["target_class"]
    seed = params["train"]["seeds"][0]
    gens = [parse_strategy(s).generator for s in params["train"]["strategies"]]
    for k in _folds(repro_repo):
        for gen in sorted({g for g in gens if g}):
            kept_dir = f"data/synthetic/fold-{k}/{gen}/kept"
            kept = sorted((repro_repo / kept_dir).glob("*.png"))
            assert kept, f"fold {k} {gen}: the filter kept no image"
            assert _json(repro_repo / f"metrics/fold-{k}/synthetic_{gen}.json")["kept"] == len(
                kept
            )
            assert _lock_md5(repro_repo, f"train@{k}", f"data/synthetic/fold-{k}", "deps")
            if f"synthetic-{gen}" not in params["train"]["strategies"]:
                continue
            for arch in params["train"]["architectures"]:
                base = _finished_run(repro_repo, k, f"baseline-{arch}-{seed}")
                name = f"synthetic-{gen}-{arch}-{seed}"
                run = _finished_run(repro_repo, k, name)
                assert run["synthetic_frames"] == len(kept)
                assert run["train_frames"][target] == base["train_frames"][target] + len(kept)
                mlrun = _mlflow_run(repro_repo, k, name)
                assert mlrun.data.params["run.synthetic_frames"] == str(len(kept))


def test_synthetic_only_runs_trained_on_every_class_of_the_conditional_generator(repro_repo):
    """synthetic_only-<G>: each class's kept images of fold k's class-conditional G, no real
    frame; a class the filter emptied skips the run with the reason instead."""
    params = _params(repro_repo)
    seed = params["train"]["seeds"][0]
    only = [s for s in params["train"]["strategies"] if parse_strategy(s).kind == "only"]
    assert only
    for k in _folds(repro_repo):
        for name in only:
            gen = parse_strategy(name).generator
            kept = repro_repo / f"data/synthetic/fold-{k}/{gen}/kept"
            per_class = {params["base"]["target_class"]: len(list(kept.glob("*.png")))}
            per_class |= {c.name: len(list(c.glob("*.png"))) for c in kept.iterdir() if c.is_dir()}
            assert set(per_class) == set(params["base"]["classes"])
            verdict = _json(repro_repo / f"metrics/fold-{k}/synthetic_{gen}.json")
            assert {c: v["kept"] for c, v in verdict["other_classes"].items()} == {
                c: n for c, n in per_class.items() if c != params["base"]["target_class"]
            }
            for arch in params["train"]["architectures"]:
                run_dir = repro_repo / f"models/classifiers/fold-{k}/{name}-{arch}-{seed}"
                if min(per_class.values()) == 0:
                    assert "passed the filter" in _json(run_dir / "skipped.json")["reason"]
                    continue
                run = _finished_run(repro_repo, k, f"{name}-{arch}-{seed}")
                assert run["train_frames"] == per_class
                assert run["synthetic_frames"] == sum(per_class.values())


def test_tuned_runs_use_their_folds_tuned_values(repro_repo):
    """class_weights_tuned and synthetic_tuned-<G> train with fold k's tuned file."""
    params = _params(repro_repo)
    classes = params["base"]["classes"]
    seed = params["train"]["seeds"][0]
    tuned_names = [s for s in params["train"]["strategies"] if parse_strategy(s).tuned]
    assert tuned_names
    for k in _folds(repro_repo):
        tuned = yaml.safe_load((repro_repo / f"params/tuned/fold-{k}.yaml").read_text())
        assert set(tuned) == set(tuned_names)
        for name in tuned_names:
            weights = [tuned[name]["class_weights"][c] for c in classes]
            for arch in params["train"]["architectures"]:
                run = _finished_run(repro_repo, k, f"{name}-{arch}-{seed}")
                assert run["loss_weights"] == pytest.approx(weights)
                assert run["tuned_on"] == params["tune"]["architecture"]
                if name.startswith("synthetic_tuned-"):
                    assert run["synthetic_frames"] == len(tuned[name]["filter"]["kept"])
        assert _lock_md5(repro_repo, f"train@{k}", f"params/tuned/fold-{k}.yaml", "deps") == (
            _lock_md5(repro_repo, f"tune@{k}", f"params/tuned/fold-{k}.yaml", "outs")
        )


def test_oversample_matched_trained_on_synthetic_counts_of_real_frames(repro_repo):
    """oversample_matched-<G>: each fold's run saw exactly synthetic-<G>'s rare-class count per
    epoch, all of it real frames (no synthetic image)."""
    params = load_params(repro_repo / "params.yaml")
    target = params.base.target_class
    matched = [s for s in params.train.strategies if parse_strategy(s).kind == "matched"]
    assert matched
    for k in _folds(repro_repo):
        for name in matched:
            twin = f"synthetic-{parse_strategy(name).generator}"
            for arch, seed in params.train.runs_of(name):
                run = _finished_run(repro_repo, k, f"{name}-{arch}-{seed}")
                synth = _finished_run(repro_repo, k, f"{twin}-{arch}-{seed}")
                assert run["synthetic_frames"] == 0
                assert run["train_frames"] == synth["train_frames"]
                assert (
                    run["train_frames"][target]
                    > synth["train_frames"][target] - synth["synthetic_frames"]
                )  # repeated real frames make up the synthetic images' count


def test_evaluate_pools_every_setting_and_decides(repro_repo):
    params = load_params(repro_repo / "params.yaml")
    train, ev = params.train, params.evaluate
    expected = {f"{s}-{a}" for s, a in train.settings()}
    metrics = _json(repro_repo / "metrics/test.json")
    assert set(metrics["settings"]) == expected
    frames = pd.read_csv(repro_repo / "data/frames.csv")
    assert metrics["test"]["frames"] == len(frames) and metrics["test"]["folds"] == len(
        _folds(repro_repo)
    )
    runs = _json(repro_repo / "metrics/test_runs.json")
    for name, m in metrics["settings"].items():
        seeds = [r for r in runs.values() if f"{r['strategy']}-{r['architecture']}" == name]
        strategy, _, arch = name.rpartition("-")
        assert sorted(r["seed"] for r in seeds) == train.seeds_of(strategy, arch), name
        for key in ("f1_macro", "accuracy"):  # a setting is the mean of its seeds' runs
            mean = sum(r[key]["value"] for r in seeds) / len(seeds)
            assert m[key] == pytest.approx(mean, abs=2e-6), (name, key)
        for key in ("f1_macro", "rare_recall", "rare_auroc", "rare_ap"):
            assert m[f"{key}_lo"] <= m[key] <= m[f"{key}_hi"], (name, key)
    document = _json(repro_repo / "metrics/comparison.json")
    comparisons = document["comparisons"]
    vs_base = {f"{c['strategy']}-{c['architecture']}" for c in comparisons.values()
               if c["control"] == ev.baseline}  # fmt: skip
    assert vs_base == {n for n in expected if not n.startswith(f"{ev.baseline}-")}
    verdicts = {"helps", "no evidence of help", "hurts", "cannot be shown"}
    for name, c in comparisons.items():
        assert c["decision"]["verdict"] in verdicts, name
        for e in ("recall", "auroc", "ap"):
            paired = c["rare"][e]
            assert paired["test"]["method"].startswith("exact"), (name, e)
            assert c["p_holm"][e] >= paired["test"]["p_value"] - 1e-12, (name, e)
            assert paired["interval"]["basis"] == "verdict" and paired["interval"]["method"]
        assert c["population"]["f1_macro"]["descriptive"]["basis"] == "descriptive"
    rare = _json(repro_repo / "metrics/rare_patients.json")["patients"]
    frames = pd.read_csv(repro_repo / "data/frames.csv", dtype=str)
    target = params.base.target_class
    assert len(rare) == frames.loc[frames["label"] == target, "patient_id"].nunique()
    assert all(set(r["auroc"]) == expected for r in rare)
    runs_planned = {f"{s}-{a}-{seed}" for s in train.strategies for a, seed in train.runs_of(s)}
    assert set(_json(repro_repo / "metrics/test_runs.json")) == runs_planned
    assert set(_json(repro_repo / "metrics/validation_runs.json")) == runs_planned


def test_evaluate_writes_every_verdict_field(repro_repo):
    """The primary (read from params) with its verdict, the same-share comparison, the placebo
    (2 baseline seeds), the MDD and study size from it, Holm and chance in the family, and the
    headline in metrics/summary.json."""
    params = load_params(repro_repo / "params.yaml")
    pr = params.evaluate.primary
    document = _json(repro_repo / "metrics/comparison.json")
    primary = document["primary"]
    assert [primary[k] for k in ("strategy", "control", "architecture", "endpoint")] == [
        pr.strategy, pr.control, pr.architecture, pr.endpoint,
    ]  # fmt: skip
    name = f"{pr.strategy} vs {pr.control} ({pr.architecture})"
    assert primary["name"] == name and primary["not_evaluated"] is None
    d = primary["decision"]
    assert d["role"] == "primary" and d["p_adjusted"] == d["p_value"] and d["reason"]
    assert document["comparisons"][name]["kind"] == "same-share control"
    placebo = document["placebo"]
    assert placebo["verdict"] == "no difference", placebo["decision"]["reason"]
    assert placebo["seeds"] == [[0], [1]] and placebo["floor"]["assumptions"]
    assert set(document["placebos"]) == set(params.train.architectures)
    mdd = document["mdd"]
    assert mdd["seeds"] == [2, 2] and mdd["endpoint"] == pr.endpoint and mdd["assumptions"]
    size = document["sample_size"]
    assert size is None or [o["seeds"] for o in size["options"]] == params.evaluate.seeds_grid
    family = document["family"]
    assert family["m"] == len(document["comparisons"]) - 1
    assert set(family["holm"][pr.endpoint]) == set(document["comparisons"]) - {name}
    assert family["chance"]["m"] == family["m"]
    assert set(document["settings"]) == set(_json(repro_repo / "metrics/test.json")["settings"])
    summary = _json(repro_repo / "metrics/summary.json")
    assert summary["primary"]["spec"] == [pr.strategy, pr.control, pr.architecture, pr.endpoint]
    assert summary["primary"]["verdict"] == d["verdict"]
    assert summary["primary"]["p"] == pytest.approx(d["p_value"], abs=1e-3)
    assert summary["placebo"] == "no difference"
    assert set(summary["baseline"]) == {"acc", "f1", pr.endpoint}
    assert set(summary["final"]) == {"acc", "f1"}
    report = (repro_repo / "reports/comparison.md").read_text()
    assert report.index("**Primary comparison**") < report.index("## Every comparison")


def test_dvc_metrics_show_is_the_summary_and_under_200_columns(repro_repo):
    out = run(["dvc", "metrics", "show"], repro_repo).stdout
    lines = out.splitlines()
    assert lines[1].startswith("metrics/summary.json") and len(lines) == 2, out
    assert max(len(line) for line in lines) < 200, out
    for key in ("primary.diff", "primary.verdict", "placebo", "baseline.f1", "final.acc"):
        assert key in lines[0], key
    spec = yaml.safe_load((repro_repo / "dvc.yaml").read_text())
    metrics = [
        m for st in spec["stages"].values() for m in (st.get("do") or st).get("metrics", [])
    ]
    assert [next(iter(m)) if isinstance(m, dict) else m for m in metrics] == [
        "metrics/summary.json"
    ]


def test_final_model_is_the_validation_choice_refit_and_registered(repro_repo):
    selection = _json(repro_repo / "metrics/selection.json")
    final = _json(repro_repo / "metrics/final.json")
    assert final["setting"] in selection["settings"]
    if not final["passed_over"]:
        assert final["setting"] == selection["chosen"]["setting"]
    frames = pd.read_csv(repro_repo / "data/splits/fold-final.csv")
    assert final["train_frames"] >= (frames["split"] == "train").sum()  # every training patient
    # what it trained on, DVC made: the final split's items of the per-fold stages, not a refit
    stages = set(run(["dvc", "stage", "list", "--name-only"], repro_repo).stdout.split())
    assert {"encoder@final", "tune@final"} <= stages and "train@final" not in stages
    assert not (repro_repo / "models/classifiers/fold-final").exists()
    assert sorted(p.name for p in (repro_repo / "models/final").iterdir() if p.is_dir()) == [
        "classifier"
    ]
    tuned = "params/tuned/fold-final.yaml"
    assert _lock_md5(repro_repo, "final", tuned, "deps") == _lock_md5(
        repro_repo, "tune@final", tuned, "outs"
    )
    strategy = parse_strategy(final["strategy"])
    if strategy.generator and strategy.kind != "synthetic_tuned":
        kept = repro_repo / f"data/synthetic/fold-final/{strategy.generator}/kept"
        assert final["synthetic_frames"] == len(list(kept.rglob("*.png")))
    registered = _json(repro_repo / "models/registered.json")
    assert registered["checkpoint"] == final["checkpoint"]
    assert _json(repro_repo / "reports/onnx_parity.json")["parity"]["passed"] is True
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repro_repo / 'mlflow.db'}")
    version = client.get_model_version(registered["name"], registered["version"])
    assert "Cross-validated estimate" in version.description
    assert "Decision record" in version.description


def test_second_repro_is_a_no_op(repro_repo):
    out = run(["dvc", "repro"], repro_repo).stdout
    assert "Running stage" not in out, out


def _copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def _assert_downstream_unchanged(repo: Path, reference: Path, upstream: set[str]) -> None:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    old_lock = yaml.safe_load((reference / "dvc.lock").read_text())
    for stage in set(lock["stages"]) - upstream:
        assert lock["stages"][stage] == old_lock["stages"][stage], f"{stage} re-ran"


def test_a_new_primary_re_runs_evaluate_and_the_card_only(repro_repo, tmp_path):
    """evaluate.primary is a DVC param of evaluate only: after a change `dvc status` names
    evaluate alone (and check_params, which checks any change of params.yaml), and `dvc repro`
    runs those and register (the card carries the verdicts;
    the same version is reused and its card rewritten); nothing trains, final and export do not
    run, and `dvc params diff` shows the change."""
    repo = _copy(repro_repo, tmp_path / "primary")
    params = _params(repo)
    params["evaluate"]["primary"]["endpoint"] = "auroc"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    assert set(status) == {"check_params", "evaluate"}, status
    diff = run(["dvc", "params", "diff"], repo).stdout
    assert "evaluate.primary.endpoint" in diff and "auroc" in diff, diff
    out = run(["dvc", "repro"], repo).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"check_params", "evaluate", "register"}, out
    document = _json(repo / "metrics/comparison.json")
    assert document["primary"]["endpoint"] == "auroc"
    assert document["mdd"]["endpoint"] == "auroc"
    assert _json(repo / "metrics/summary.json")["primary"]["spec"][3] == "auroc"
    registered = _json(repo / "models/registered.json")
    assert registered == _json(repro_repo / "models/registered.json")  # the same version
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    card = client.get_model_version(registered["name"], registered["version"]).description
    assert f"`{document['primary']['name']}` (auroc)" in card


def _contents(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) by relative name, with its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(path.parent).as_posix(): p.read_bytes() for p in files}


def test_lusaug_repro_keeps_the_outputs_of_a_late_stage_that_fails(repro_repo, tmp_path):
    """`export` broken (its script exits at once): DVC deletes models/onnx and the git-tracked
    reports/onnx_parity.json before running it. `lusaug repro` fails with the stage's message
    and leaves both byte-identical, and every earlier stage's outputs untouched."""
    repo = _copy(repro_repo, tmp_path / "broken")
    kept = ["models/onnx", "reports/onnx_parity.json", "models/final", "metrics/summary.json"]
    before = {name: _contents(repo / name) for name in kept}
    script = repo / "pipelines/export.py"
    text = script.read_text()
    assert "    args = parse_args(argv)\n" in text
    script.write_text(
        text.replace("    args = parse_args(argv)\n", '    raise SystemExit("export broken")\n')
    )
    proc = run(["lusaug", "repro"], repo, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "export broken" in output, output[-3000:]
    assert "restored the previous outputs of export" in output, output[-3000:]
    assert {name: _contents(repo / name) for name in kept} == before
    _assert_downstream_unchanged(repo, repro_repo, set())  # dvc.lock as before, export's too


def test_duplicated_clip_across_patients_stops_at_split(repro_repo, tmp_path):
    """One clip filed under every patient: the split links them and refuses, naming the link."""
    repo = _copy(repro_repo, tmp_path / "dup")
    meta = pd.read_csv(repo / "data/raw/metadata.csv", dtype=str)
    clip = meta[meta["file"].str.endswith(".mp4")].iloc[0]
    rows = []
    for i, patient in enumerate(sorted(meta["patient_id"].unique())):
        name = Path(clip["file"]).with_name(f"{Path(clip['file']).stem}_dup{i}.mp4").as_posix()
        shutil.copy(repo / "data/raw" / clip["file"], repo / "data/raw" / name)
        rows.append({**clip.to_dict(), "file": name, "patient_id": patient})
    pd.concat([meta, pd.DataFrame(rows)]).to_csv(repo / "data/raw/metadata.csv", index=False)
    run(["dvc", "commit", "-q", "-f", "data.dvc"], repo)
    proc = run(["dvc", "repro"], repo, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "split" in output and "identical" in output, output[-3000:]
    _assert_downstream_unchanged(repo, repro_repo, {"frames", "split"})


def test_tampered_split_fails_validate_and_nothing_trains(repro_repo, tmp_path):
    """A patient moved half into fold 0's test split (so tested in two folds too): `validate`
    fails and names the patient."""
    repo = _copy(repro_repo, tmp_path / "tampered")
    path = repo / "data/splits/fold-0.csv"
    splits = pd.read_csv(path, dtype=str, keep_default_na=False)
    patient = splits.loc[splits["split"] == "train", "patient_id"].iloc[0]
    rows = splits.index[splits["patient_id"] == patient]
    splits.loc[rows[: max(1, len(rows) // 2)], "split"] = "test"
    splits.to_csv(path, index=False)
    proc = run(["dvc", "repro", "--single-item", "validate"], repo, check=False)
    assert proc.returncode != 0
    assert patient in proc.stdout + proc.stderr
    validation = json.loads((repo / "metrics/validation.json").read_text())
    assert validation["success"] is False
    # a full repro restores the split first; the tampered file never reaches training
    _assert_downstream_unchanged(repo, repro_repo, {"frames", "split", "validate"})


def _crash_copy(repro_repo: Path, dest: Path) -> Path:
    """A copy whose train@0 trains 2 runs for 3 epochs (one stage item, re-run with -s)."""
    repo = _copy(repro_repo, dest)
    params = _params(repo)
    params["train"].update(strategies=["baseline", "class_weights"], epochs=3, patience=0,
                           overrides=[])  # fmt: skip
    params["evaluate"]["primary"].update(strategy="class_weights", control="baseline")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def _epochs_done(repo: Path) -> int:
    import torch

    lasts = list((repo / "models/classifiers/fold-0").glob("*/last.pt"))
    return max((int(torch.load(p, weights_only=True)["epoch"]) for p in lasts), default=0)


def test_kill_9_during_training_then_repro_completes_as_if_uninterrupted(repro_repo, tmp_path):
    """A kill -9 of a real `dvc repro` mid-matrix, then `dvc repro` again: it resumes the
    interrupted run after its last finished epoch and ends bit-identical to an uninterrupted
    run (weights, history, validation metrics)."""
    import os
    import signal
    import subprocess
    import time

    reference = _crash_copy(repro_repo, tmp_path / "reference")
    run(["dvc", "repro", "-s", "train@0"], reference)
    crashed = _crash_copy(repro_repo, tmp_path / "crashed")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{crashed / 'mlflow.db'}",
    }
    proc = subprocess.Popen(
        ["dvc", "repro", "-s", "train@0"], cwd=crashed, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while _epochs_done(crashed) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = _epochs_done(crashed)
    assert interrupted_at >= 1
    again = run(["dvc", "repro", "-s", "train@0"], crashed)
    log = again.stdout + again.stderr
    assert "resuming baseline-" in log and f"after epoch {interrupted_at}" in log, log[-3000:]
    import torch

    for name in ("baseline-resnet-0", "baseline-vit-0"):
        a = reference / "models/classifiers/fold-0" / name
        b = crashed / "models/classifiers/fold-0" / name
        assert not (b / "last.pt").exists()
        wa = torch.load(a / "model.pt", weights_only=True)["state_dict"]
        wb = torch.load(b / "model.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
        # every file the run leaves (DVC hashes them all) is byte-identical; only the execution
        # record (wall times, MLflow ids; not hashed) differs
        files = sorted(f.name for f in a.iterdir() if f.name != EXECUTION_FILE)
        assert files == sorted(f.name for f in b.iterdir() if f.name != EXECUTION_FILE), name
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), (name, f)
