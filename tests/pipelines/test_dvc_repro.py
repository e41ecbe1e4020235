"""End to end: the real `dvc repro` on the micro profile in a temporary copy of the repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lusaug.config import PROJ_ROOT, deep_merge
from lusaug.data.manifest import MANIFEST_COLUMNS
from tests.pipelines.helpers import (
    assert_every_stage_wrote_its_outputs,
    micro_repo,
    run,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro_repo(tmp_path_factory) -> Path:
    repo = micro_repo(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro"], repo)
    return repo


def test_every_stage_ran_and_wrote_its_outputs(repro_repo):
    assert_every_stage_wrote_its_outputs(repro_repo)


def test_foundation_outputs(repro_repo):
    frames = pd.read_csv(repro_repo / "data/frames.csv", dtype=str)
    assert list(frames.columns) == MANIFEST_COLUMNS
    params = yaml.safe_load((repro_repo / "params.yaml").read_text())
    assert set(frames["label"]) == set(params["base"]["classes"])
    splits = pd.read_csv(repro_repo / "data/splits.csv", dtype=str)
    assert set(splits["split"]) == {"train", "val", "test"}
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()
    validation = json.loads((repro_repo / "metrics/validation.json").read_text())
    assert validation["success"] is True
    assert (repro_repo / "reports/validation/index.html").exists()


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _lock_md5(repo: Path, stage: str, path: str, section: str) -> str:
    """The md5 that dvc.lock records for ``path`` among a stage's deps or outs."""
    entries = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage][section]
    found = [e["md5"] for e in entries if e["path"] == path]
    assert found, f"dvc.lock: {stage} has no {section} entry {path}"
    return found[0]


def _finished_run(repo: Path, name: str) -> dict:
    """A finished run folder's val_metrics.json (it also has weights and run.json, no last.pt)."""
    folder = repo / "models/classifiers" / name
    for f in ("model.pt", "run.json", "val_metrics.json", "history.csv", "val_predictions.csv"):
        assert (folder / f).is_file(), f"{name}: {f} missing"
    assert not (folder / "last.pt").exists(), f"{name} did not finish"
    summary = _json(folder / "val_metrics.json")
    assert summary["run"] == name
    return summary


def _mlflow_run(repo: Path, name: str):
    from mlflow.tracking import MlflowClient

    run_id = _json(repo / "models/classifiers" / name / "run.json")["mlflow_run_id"]
    run = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED", (name, run.info.status)
    return run


def test_micro_trains_every_kind_of_strategy():
    """The micro profile itself: synthetic and tuned runs are part of the end-to-end run."""
    base = yaml.safe_load((PROJ_ROOT / "params.yaml").read_text())
    micro = deep_merge(base, yaml.safe_load((PROJ_ROOT / "profiles/micro.yaml").read_text()))
    assert micro["train"]["tuned_strategies"] == ["class_weights_tuned"]
    assert micro["train"]["generators"]
    assert set(micro["train"]["generators"]) <= set(micro["generate"]["enabled"])


def test_synthetic_runs_trained_on_the_kept_images(repro_repo):
    """synthetic-<G> adds exactly G's kept images to the target class, and DVC tracked them."""
    params = _params(repro_repo)
    classes, target = params["base"]["classes"], params["base"]["target_class"]
    per_class = params["train"]["synthetic_per_class"]
    seed = params["train"]["seeds"][0]
    for gen in params["train"]["generators"]:
        kept_dir = f"data/synthetic/{gen}/kept"
        kept = sorted((repro_repo / kept_dir).glob("*.png"))
        assert kept, f"{gen}: the filter kept no image, the synthetic run adds nothing"
        assert _json(repro_repo / f"metrics/synthetic_{gen}.json")["kept"] == len(kept)
        added = len(kept) if per_class == 0 else min(per_class, len(kept))
        for arch in params["train"]["architectures"]:
            base = _finished_run(repro_repo, f"baseline-{arch}-{seed}")
            name = f"synthetic-{gen}-{arch}-{seed}"
            run = _finished_run(repro_repo, name)
            assert run["strategy"] == f"synthetic-{gen}"
            assert run["synthetic_frames"] == added
            expected = {
                c: base["train_frames"][c] + (added if c == target else 0) for c in classes
            }
            assert run["train_frames"] == expected
            mlrun = _mlflow_run(repro_repo, name)
            assert mlrun.data.params["run.synthetic_frames"] == str(added)
            assert mlrun.data.params[f"run.train_frames.{target}"] == str(expected[target])
            assert mlrun.data.tags["strategy"] == f"synthetic-{gen}"
            stage = f"train_synthetic@{gen}-{arch}-{seed}"
            assert _lock_md5(repro_repo, stage, kept_dir, "deps") == _lock_md5(
                repro_repo, f"filter@{gen}", kept_dir, "outs"
            )


def test_tuned_runs_use_the_tuned_weights(repro_repo):
    """class_weights_tuned trains with params/tuned.yaml's weights (and lr), not N / N_i."""
    params = _params(repro_repo)
    classes = params["base"]["classes"]
    seed = params["train"]["seeds"][0]
    tuned = yaml.safe_load((repro_repo / "params/tuned.yaml").read_text())
    weights = [tuned["class_weights"][c] for c in classes]
    for arch in params["train"]["architectures"]:
        name = f"class_weights_tuned-{arch}-{seed}"
        run = _finished_run(repro_repo, name)
        assert run["strategy"] == "class_weights_tuned"
        assert run["synthetic_frames"] == 0
        assert run["loss_weights"] == pytest.approx(weights)
        inverse = _finished_run(repro_repo, f"class_weights-{arch}-{seed}")["loss_weights"]
        assert run["loss_weights"] != pytest.approx(inverse)
        mlrun = _mlflow_run(repro_repo, name)
        if tuned.get("lr") is not None:
            assert float(mlrun.data.params["run.lr"]) == pytest.approx(tuned["lr"])
        stage = f"train_tuned@{name}"
        assert _lock_md5(repro_repo, stage, "params/tuned.yaml", "deps") == _lock_md5(
            repro_repo, "tune", "params/tuned.yaml", "outs"
        )


def test_evaluate_reports_every_setting(repro_repo):
    """metrics/test.json has every strategy x architecture; comparison.json all but baseline."""
    params = _params(repro_repo)
    train = params["train"]
    strategies = [
        *train["strategies"],
        *train["tuned_strategies"],
        *(f"synthetic-{g}" for g in train["generators"]),
    ]
    expected = {f"{s}-{a}" for s in strategies for a in train["architectures"]}
    settings = _json(repro_repo / "metrics/test.json")["settings"]
    assert set(settings) == expected
    for name, m in settings.items():
        for key in ("f1_macro", "f1_macro_lo", "f1_macro_hi", "accuracy"):
            assert 0.0 <= m[key] <= 1.0, (name, key, m[key])
        assert m["f1_macro_lo"] <= m["f1_macro_hi"], name
    baseline = params["evaluate"]["baseline"]
    comparison = _json(repro_repo / "metrics/comparison.json")
    assert set(comparison) == {n for n in expected if not n.startswith(f"{baseline}-")}
    runs = {f"{n}-{s}" for n in expected for s in train["seeds"]}
    assert set(_json(repro_repo / "metrics/test_runs.json")) == runs
    assert set(_json(repro_repo / "metrics/validation_runs.json")) == runs


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
    """A patient moved half into another split: `validate` fails and names the patient."""
    repo = _copy(repro_repo, tmp_path / "tampered")
    splits = pd.read_csv(repo / "data/splits.csv", dtype=str, keep_default_na=False)
    patient = splits.loc[splits["split"] == "train", "patient_id"].iloc[0]
    rows = splits.index[splits["patient_id"] == patient]
    splits.loc[rows[: max(1, len(rows) // 2)], "split"] = "test"
    splits.to_csv(repo / "data/splits.csv", index=False)
    proc = run(["dvc", "repro", "--single-item", "validate"], repo, check=False)
    assert proc.returncode != 0
    assert patient in proc.stdout + proc.stderr
    validation = json.loads((repo / "metrics/validation.json").read_text())
    assert validation["success"] is False
    # a full repro restores the split first; the tampered file never reaches training
    _assert_downstream_unchanged(repo, repro_repo, {"frames", "split", "validate"})
