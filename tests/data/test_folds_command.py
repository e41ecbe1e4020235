"""`lusaug folds`: the number of folds the data gives, written into split.folds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lusaug.core.config import PROJ_ROOT
from tests.helpers.toy import write_toy_dataset

LUSAUG = Path(sys.executable).parent / "lusaug"


def _folds(params: Path, frames: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LUSAUG), "folds", "--params", str(params), "--frames", str(frames), *extra],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_folds_counts_the_rare_groups_and_writes_them(tmp_path, params):
    frames = write_toy_dataset(tmp_path / "data", params.base.classes, size=32)  # 4 viral patients
    conf = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", conf)
    text = re.sub(r"(?m)^(  max_folds:) *\d+", r"\1 5", conf.read_text())  # whatever the profile
    text = re.sub(r"(?m)^(  folds:) *\[[0-9, ]*\]", r"\1 [0, 1]", text)
    text = re.sub(r"(?m)^(  items:) *\[[0-9a-z, ]*\]", r"\1 [0, 1, final]", text)
    conf.write_text(re.sub(r"(?m)^(  image_size:) *\d+", r"\1 32", text))
    assert yaml.safe_load(conf.read_text())["split"]["max_folds"] == 5
    shown = _folds(conf, frames)
    assert shown.returncode == 0, shown.stderr
    assert "viral: 4 independent patient group(s)" in shown.stdout
    assert "split.folds [0, 1, 2, 3]" in shown.stdout
    assert yaml.safe_load(conf.read_text())["split"]["folds"] == [0, 1]  # shown, not written
    capped = conf.read_text().replace("max_folds: 5", "max_folds: 3")
    conf.write_text(capped)
    written = _folds(conf, frames, "--write")
    assert written.returncode == 0 and "written to" in written.stdout
    assert yaml.safe_load(conf.read_text())["split"]["folds"] == [0, 1, 2]
    assert yaml.safe_load(conf.read_text())["split"]["items"] == [0, 1, 2, "final"]
    assert "folds: [0, 1, 2]" in conf.read_text() and "`lusaug folds`" in conf.read_text()


def test_folds_on_a_missing_manifest_is_a_clear_error(tmp_path):
    conf = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", conf)
    proc = _folds(conf, tmp_path / "nowhere.csv")
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_folds_write_after_a_profile_round_trips(tmp_path, params):
    """`lusaug profile micro` writes lists under keys with trailing comments; `lusaug folds
    --write` reads that file back and writes it again, and the result still loads."""
    from lusaug.core.config import load_params

    frames = write_toy_dataset(tmp_path / "data", params.base.classes, size=32)
    conf = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", conf)
    profile = subprocess.run(
        [str(LUSAUG), "profile", "micro", "--params", str(conf)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert profile.returncode == 0, profile.stderr
    written = _folds(conf, frames, "--write")
    assert written.returncode == 0, written.stderr
    loaded = load_params(conf)
    assert loaded.base.profile == "micro" and loaded.split.folds == list(
        range(len(loaded.split.folds))
    )
    assert re.search(r"(?m)^  folds: \[[0-9, ]+\] +# ", conf.read_text())  # one line, comment kept
