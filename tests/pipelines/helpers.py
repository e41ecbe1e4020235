"""Run the real pipeline (dvc, lusaug CLI) in a temporary copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lusaug.core.config import PROJ_ROOT

BIN = Path(sys.executable).parent


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """Run a command with the venv on PATH; on failure re-raise with its output."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    env.update(GX_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return run_in_env(cmd, cwd, env, check, timeout)


def run_in_env(
    cmd: list[str], cwd: Path, env: dict[str, str], check: bool, timeout: int
) -> subprocess.CompletedProcess:
    """Run ``cmd`` with exactly ``env``; on failure raise with the tail of its output."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def copy_repo(dest: Path) -> Path:
    """Copy the files git would ship (tracked + untracked-not-ignored) and make it a git repo."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=PROJ_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = PROJ_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dest)
    return dest


def micro_repo(dest: Path) -> Path:
    """A repo copy on the micro profile with the phantom in data/raw committed to DVC."""
    copy_repo(dest)
    run(["lusaug", "profile", "micro"], dest)
    run(["lusaug", "phantom", "--out", "data/raw", "--force"], dest)
    run(["dvc", "commit", "-q", "-f", "data.dvc"], dest)
    return dest


def declared_outs(repo: Path) -> list[Path]:
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


def assert_every_stage_wrote_its_outputs(repo: Path) -> None:
    """Every output the current stages declare in dvc.lock exists, and `dvc status` is clean."""
    import json

    outs = declared_outs(repo)
    assert outs, "dvc.lock lists no outputs"
    missing = [str(p.relative_to(repo)) for p in outs if not p.exists()]
    assert not missing, f"declared outputs missing: {missing}"
    status = run(["dvc", "status", "--json"], repo).stdout
    assert json.loads(status) == {}, status
