"""End to end: the real `dvc repro` on the micro profile in a temporary copy of the repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lusaug.data.manifest import MANIFEST_COLUMNS
from tests.pipelines.helpers import micro_repo, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro_repo(tmp_path_factory) -> Path:
    repo = micro_repo(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro"], repo)
    return repo


def _declared_outs(repo: Path) -> list[Path]:
    """Outputs of the stages in the current pipeline (dvc.lock may keep entries of old ones)."""
    current = set(run(["dvc", "stage", "list", "--name-only"], repo).stdout.split())
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert current <= set(lock["stages"]), f"stages never ran: {current - set(lock['stages'])}"
    return [
        repo / out["path"]
        for name, stage in lock["stages"].items()
        if name in current
        for out in stage.get("outs", [])
    ]


def test_every_stage_ran_and_wrote_its_outputs(repro_repo):
    outs = _declared_outs(repro_repo)
    assert outs, "dvc.lock lists no outputs"
    missing = [str(p.relative_to(repro_repo)) for p in outs if not p.exists()]
    assert not missing, f"declared outputs missing: {missing}"
    status = run(["dvc", "status", "--json"], repro_repo).stdout
    assert json.loads(status) == {}, status


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
