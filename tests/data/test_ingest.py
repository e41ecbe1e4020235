"""`lusaug import`: prefix mapping, metadata join, uncertain folder, atomic copy, data.dvc in step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.data.dvc_data import DvcError, commit_raw, tracked_path
from lusaug.data.ingest import (
    IngestError,
    PrefixMatch,
    class_from_filename,
    format_summary,
    import_folder,
    match_prefix,
    normalise_patient_id,
    plan_import,
)
from lusaug.data.manifest import RAW_METADATA_COLUMNS
from tests.data.media_helpers import write_image, write_video

PREFIXES = {
    "Cov": "covid",
    "Pneu": "pneumonia",
    "pneu": "pneumonia",
    "Reg": "regular",
    "Vir": "viral",
}


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Cov-Atlas+(44).gif", "covid"),
        ("Cov_combatting_Image1.mp4", "covid"),
        ("Cov.mp4", "covid"),
        ("Pneu_Avi_Video_001.mp4", "pneumonia"),
        ("pneu-radiopaeda.mp4", "pneumonia"),
        ("Pneu-Atlas-pneumonia.gif", "pneumonia"),
        ("Reg_Avi_lung-sliding.MP4", "regular"),
        ("Vir_liftl_H1N1_case2_clip1.mp4", "viral"),
        # real-world names: a prefix followed by any non-letter (space, digit, bracket, dot)
        ("Reg 2.mp4", "regular"),
        ("Cov-case3.mp4", "covid"),
        ("Cov3.mp4", "covid"),
        ("Vir(1).mp4", "viral"),
        ("Reg[2].mov", "regular"),
        ("Pneu.final.mp4", "pneumonia"),
        ("Covid_clip.mp4", None),  # a prefix followed by a letter is another word
        ("Regular-1.mp4", None),
        ("cov_lowercase.mp4", None),  # case-sensitive unless the mapping lists it
        ("Unknown_x.mp4", None),
        ("Pneumothorax_case.mp4", None),
    ],
)
def test_class_from_filename(name, label):
    assert class_from_filename(name, PREFIXES) == label


def test_longest_prefix_wins():
    prefixes = {"Vir": "viral", "Vir_or_Pneu": "pneumonia"}
    assert class_from_filename("Vir_or_Pneu_file4.mp4", prefixes) == "pneumonia"
    assert class_from_filename("Vir_file1.mp4", prefixes) == "viral"


def test_a_name_two_classes_read_is_ambiguous_and_says_why():
    prefixes = {"Vir": "viral", "Vir_or_Pneu": "pneumonia", "Reg": "regular", "Reg 2": "regular"}
    m = match_prefix("Vir_or_Pneu file4.mp4", prefixes)
    assert m.label == "pneumonia"
    assert m.ambiguous == (
        "starts with class prefixes 'Vir' (viral), 'Vir_or_Pneu' (pneumonia): "
        "the longest, 'Vir_or_Pneu', gives pneumonia"
    )
    assert match_prefix("Vir 7.mp4", prefixes) == PrefixMatch("viral")  # one class: clear
    assert match_prefix("Reg 2 b.mp4", prefixes) == PrefixMatch("regular")  # same class twice
    assert match_prefix("Virus.mp4", prefixes) == PrefixMatch(None)


def test_import_lists_ambiguous_names_with_the_reason(tmp_path, params):
    src = tmp_path / "src"
    for name in ("Vir_or_Pneu 1.avi", "Reg 2.avi", "Cov-case3.avi", "Pneu(4).avi", "Vir7.avi"):
        write_video(src / name, 3)
    prefixes = {**params.import_.prefixes, "Vir_or_Pneu": "pneumonia"}
    p = replace(params, import_=replace(params.import_, prefixes=prefixes, metadata_csv=""))
    summary = import_folder(src, tmp_path / "raw", p, dvc_commit=False)
    assert summary["per_class"] == {"regular": 1, "covid": 1, "pneumonia": 2, "viral": 1}
    assert summary["skipped"] == []
    (amb,) = summary["ambiguous_names"]
    assert amb["file"] == "Vir_or_Pneu 1.avi" and amb["label"] == "pneumonia"
    assert "'Vir' (viral)" in amb["reason"] and "the longest, 'Vir_or_Pneu'" in amb["reason"]
    assert "ambiguous names 1:" in format_summary(summary)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, "5"),
        (5.0, "5"),
        ("5.0", "5"),
        (" 12 ", "12"),
        ("7.00", "7"),
        ("Anna", "Anna"),
        (float("nan"), ""),
        ("", ""),
        (None, ""),
        ("5.5", "5.5"),
    ],
)
def test_normalise_patient_id(raw, expected):
    assert normalise_patient_id(raw) == expected


def _pocus_like(root: Path, metadata: bool = True) -> Path:
    """A tiny POCUS-style folder: videos, images, an uncertain clip, an unknown prefix, a note."""
    write_video(root / "pocus_videos/convex/Cov_a.avi", 4)
    write_video(root / "pocus_videos/convex/Vir_case2_clip1.avi", 4)
    write_video(root / "pocus_videos/linear/Vir_case2_clip2.avi", 4)
    write_video(root / "pocus_videos/convex/pneu-radio.avi", 4)
    write_video(root / "pocus_videos/convex/Reg_b.avi", 4)
    write_video(root / "pocus_videos/convex/Xyz_unknown.avi", 4)
    write_video(root / "pocus_videos/linear/label_uncertain/Vir_or_Pneu_file4.avi", 4)
    write_image(root / "pocus_images/linear/Reg_img.png")
    (root / "README.md").write_text("notes\n")
    (root / "pocus_videos/convex/slides.pdf").write_bytes(b"%PDF-1.4")
    (root / "crop.json").write_text('{"pocus_videos/convex/Cov_a.avi": [[0, 0, 10], [0, 4]]}')
    if metadata:
        # Written the way a spreadsheet export looks: patient ids as floats, extra columns,
        # rows for files that are not here, one file without a patient id.
        pd.DataFrame(
            {
                "Filename": [
                    "Cov_a",
                    "Vir_case2_clip1",
                    "Vir_case2_clip2",
                    "pneu-radio",
                    "Reg_b",
                    "Not_here",
                    "Reg_img",
                ],
                "Label": [
                    "COVID-19",
                    "Viral",
                    "Viral",
                    "Bacterial",
                    "regular",
                    "regular",
                    "regular",
                ],
                "Patient ID / Name": [1.0, 5.0, 5.0, 7.0, 7.0, 9.0, None],
                "Probe": ["convex", "convex", "linear", "convex", "convex", "convex", "linear"],
                "Source ID": [2, 16, 16, 6, 16, 1, 3],
                "License": ["CC BY 4.0", "CC BY-NC", "CC BY-NC", "CC BY", "CC BY", "x", "CC0"],
                "Framerate": [30, 12, 12, 30, 15, 1, 0],
            }
        ).to_csv(root / "dataset_metadata.csv", index=False)
    return root


def test_plan_joins_metadata_and_normalises_patients(tmp_path, params):
    src = _pocus_like(tmp_path / "src")
    rows, skipped = plan_import(src, params)
    by_file = {r["file"]: r for r in rows}
    assert by_file["pocus_videos/convex/Vir_case2_clip1.avi"]["patient_id"] == "5"
    assert by_file["pocus_videos/linear/Vir_case2_clip2.avi"]["patient_id"] == "5"
    assert by_file["pocus_videos/convex/pneu-radio.avi"]["patient_id"] == "7"
    assert by_file["pocus_videos/convex/pneu-radio.avi"]["label"] == "pneumonia"
    assert by_file["pocus_videos/convex/Reg_b.avi"]["patient_id"] == "7"
    assert by_file["pocus_videos/linear/Vir_case2_clip2.avi"]["probe"] == "linear"
    assert by_file["pocus_videos/convex/Cov_a.avi"]["license"] == "CC BY 4.0"
    assert by_file["pocus_videos/convex/Cov_a.avi"]["source"] == "2"
    # empty patient id in the CSV -> one patient per file
    assert by_file["pocus_images/linear/Reg_img.png"]["patient_id"] == "file:Reg_img"
    reasons = {s["file"]: s["reason"] for s in skipped}
    assert "unknown class prefix" in reasons["pocus_videos/convex/Xyz_unknown.avi"]
    assert (
        "label_uncertain" in reasons["pocus_videos/linear/label_uncertain/Vir_or_Pneu_file4.avi"]
    )
    assert "not a video or image" in reasons["pocus_videos/convex/slides.pdf"]
    assert "README.md" not in reasons and "dataset_metadata.csv" not in reasons
    assert "crop.json" not in reasons


def test_plan_without_metadata_one_patient_per_file(tmp_path, params):
    src = _pocus_like(tmp_path / "src", metadata=False)
    rows, _ = plan_import(src, params)
    assert len({r["patient_id"] for r in rows}) == len(rows)
    by_file = {r["file"]: r for r in rows}
    assert (
        by_file["pocus_videos/linear/Vir_case2_clip2.avi"]["patient_id"] == "file:Vir_case2_clip2"
    )
    assert by_file["pocus_videos/linear/Vir_case2_clip2.avi"]["probe"] == "linear"
    assert by_file["pocus_videos/convex/Cov_a.avi"]["probe"] == "convex"


def test_uncertain_included_with_flag(tmp_path, params):
    src = _pocus_like(tmp_path / "src")
    flagged = replace(params, import_=replace(params.import_, include_uncertain=True))
    rows, skipped = plan_import(src, flagged)
    files = {r["file"] for r in rows}
    assert "pocus_videos/linear/label_uncertain/Vir_or_Pneu_file4.avi" in files
    assert not any("label_uncertain" in s["file"] for s in skipped)


def test_import_folder_copies_and_writes_metadata(tmp_path, params):
    src = _pocus_like(tmp_path / "src")
    dest = tmp_path / "data" / "raw"
    summary = import_folder(src, dest, params, dvc_commit=False)
    meta = pd.read_csv(dest / "metadata.csv", dtype=str, keep_default_na=False)
    assert list(meta.columns) == RAW_METADATA_COLUMNS
    assert len(meta) == summary["files"] == 6
    for rel in meta["file"]:
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    assert (dest / "crop.json").is_file()
    assert not (dest / "pocus_videos/linear/label_uncertain").exists()
    assert not (dest / "pocus_videos/convex/Xyz_unknown.avi").exists()
    assert summary["per_class"] == {"regular": 2, "covid": 1, "pneumonia": 1, "viral": 2}
    assert {s["file"] for s in summary["skipped"]} == {
        "pocus_videos/convex/Xyz_unknown.avi",
        "pocus_videos/convex/slides.pdf",
        "pocus_videos/linear/label_uncertain/Vir_or_Pneu_file4.avi",
    }
    # no temporary siblings left behind
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw"]


def test_import_refuses_non_empty_dest_unless_forced(tmp_path, params):
    src = _pocus_like(tmp_path / "src")
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "keep.txt").write_text("old")
    with pytest.raises(IngestError, match="not empty"):
        import_folder(src, dest, params, dvc_commit=False)
    assert (dest / "keep.txt").read_text() == "old"
    import_folder(src, dest, params, force=True, dvc_commit=False)
    assert not (dest / "keep.txt").exists()
    assert (dest / "metadata.csv").is_file()


def test_import_missing_or_empty_input(tmp_path, params):
    with pytest.raises(IngestError, match="does not exist"):
        import_folder(tmp_path / "nope", tmp_path / "raw", params, dvc_commit=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="is empty"):
        import_folder(tmp_path / "empty", tmp_path / "raw", params, dvc_commit=False)
    only_junk = tmp_path / "junk"
    write_video(only_junk / "Xyz_1.avi", 2)
    with pytest.raises(IngestError, match="no importable"):
        import_folder(only_junk, tmp_path / "raw", params, dvc_commit=False)
    assert not (tmp_path / "raw").exists()


def test_import_needs_dvc_repo_when_committing(tmp_path, params):
    src = _pocus_like(tmp_path / "src")
    with pytest.raises(IngestError, match="not inside a DVC repository"):
        import_folder(src, tmp_path / "raw", params, dvc_commit=True)
    assert not (tmp_path / "raw").exists()  # checked before anything is written


def test_cli_import_clear_error_exit_2(tmp_path):
    runner = CliRunner()
    params_file = Path(__file__).resolve().parents[2] / "params.yaml"
    result = runner.invoke(
        app,
        [
            "import",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "raw"),
            "--params",
            str(params_file),
            "--no-dvc-commit",
        ],
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


# --- data.dvc kept in step (real git + dvc in a temporary repository) ---------------------------


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, check=True
    )


@pytest.fixture
def dvc_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(os.environ)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    _dvc("init", "-q", cwd=repo)
    (repo / ".gitignore").write_text("/data/raw/\n")
    return repo


def _md5(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


def test_commit_raw_creates_then_refreshes_data_dvc(dvc_repo):
    raw = dvc_repo / "data" / "raw"
    write_video(raw / "pocus_videos/convex/Cov_a.avi", 3)
    assert commit_raw(dvc_repo) == "created data.dvc"
    dvc_file = dvc_repo / "data.dvc"
    assert tracked_path(dvc_file) == "data/raw"
    assert dvc_file.read_text().endswith("path: data/raw\n")
    assert not (dvc_repo / "data" / "raw.dvc").exists()
    assert not (dvc_repo / "data" / ".gitignore").exists()  # only held /raw
    first = _md5(dvc_file)

    write_video(raw / "pocus_videos/convex/Reg_b.avi", 3)
    assert "modified" in _dvc("status", "data.dvc", cwd=dvc_repo).stdout
    assert commit_raw(dvc_repo) == "committed data.dvc"
    assert _md5(dvc_file) != first
    assert tracked_path(dvc_file) == "data/raw"
    assert "up to date" in _dvc("status", cwd=dvc_repo).stdout


def test_commit_raw_keeps_a_gitignore_with_other_entries(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc("init", "-q", cwd=repo)
    (repo / "data").mkdir()
    (repo / "data" / ".gitignore").write_text("/frames\n")
    write_video(repo / "data" / "raw" / "Cov_a.avi", 2)
    commit_raw(repo)
    lines = (repo / "data" / ".gitignore").read_text().split()
    assert "/frames" in lines and "/raw" in lines


def test_commit_raw_errors(tmp_path, dvc_repo):
    with pytest.raises(DvcError, match="not a DVC repository"):
        commit_raw(tmp_path)
    with pytest.raises(DvcError, match="does not exist"):
        commit_raw(dvc_repo, "data/raw")
    (dvc_repo / "data.dvc").write_text("outs:\n- md5: x\n  path: elsewhere\n")
    (dvc_repo / "data" / "raw").mkdir(parents=True)
    with pytest.raises(DvcError, match="tracks 'elsewhere'"):
        commit_raw(dvc_repo)


def test_import_into_dvc_repo_commits(tmp_path, dvc_repo, params):
    src = _pocus_like(tmp_path / "src")
    summary = import_folder(src, dvc_repo / "data" / "raw", params, dvc_commit=True)
    assert summary["dvc"] == "created data.dvc"
    first = _md5(dvc_repo / "data.dvc")
    # re-import with one file fewer: data.dvc follows
    (src / "pocus_videos/convex/Reg_b.avi").unlink()
    summary = import_folder(src, dvc_repo / "data" / "raw", params, force=True, dvc_commit=True)
    assert summary["dvc"] == "committed data.dvc"
    assert _md5(dvc_repo / "data.dvc") != first
    assert "up to date" in _dvc("status", cwd=dvc_repo).stdout
    shutil.rmtree(src)
