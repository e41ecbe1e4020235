"""Commands against the team services: the venv on PATH, the tracking server, fake S3 keys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.pipelines.helpers import BIN, run_in_env
from tests.team.services import FAKE_AWS

TIMEOUT_S = 3600


def team_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    """The environment a team member's shell has: tracking server, S3 keys for DVC."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(FAKE_AWS)
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri, GX_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", LUSAUG_USER="tester",
    )  # fmt: skip
    env.update(extra)
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: int = TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with the tail of its output."""
    return run_in_env(cmd, cwd, env, check, timeout)


def git_commit_all(repo: Path, message: str) -> None:
    ident = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", *ident, "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", *ident, "commit", "-q", "--allow-empty", "-m", message], cwd=repo, check=True
    )
