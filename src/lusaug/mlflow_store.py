"""Where runs go and what every run is tagged with.

Default store: ``sqlite:///<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``; any
``MLFLOW_TRACKING_URI`` (a server, another database) wins.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

EXPERIMENTS = {
    "classifiers": "lusaug-classifiers",
    "generators": "lusaug-generators",
    "tuning": "lusaug-tuning",
}


def tracking_uri(configured: str = "", root: Path | str = ".") -> str:
    """Resolve the tracking URI: env var, then params, then the local SQLite file (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def setup_experiment(kind: str, configured_uri: str = "", root: Path | str = ".") -> str:
    """Point MLflow at the store and select (creating if needed) the experiment for ``kind``."""
    import mlflow

    uri = tracking_uri(configured_uri, root)
    mlflow.set_tracking_uri(uri)
    name = EXPERIMENTS[kind]
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            # Keep artifacts beside the database rather than in ./mlruns of whatever cwd.
            db_path = Path(uri.removeprefix("sqlite:///"))
            artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
        exp_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit(root: Path | str = ".") -> str:
    """Current commit (with ``-dirty`` when the tree has changes), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def data_hash(root: Path | str = ".") -> str:
    """The DVC hash of data/raw from ``data.dvc`` (what the run's data version is)."""
    dvc_file = Path(root) / "data.dvc"
    if not dvc_file.exists():
        return "unknown"
    with dvc_file.open() as fh:
        outs = (yaml.safe_load(fh) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))


def standard_tags(root: Path | str = ".", **extra: object) -> dict[str, str]:
    """Tags every lusaug run carries (git commit, data hash, DVC stage) plus ``extra``."""
    tags = {
        "git_commit": git_commit(root),
        "data_hash": data_hash(root),
        "dvc_stage": os.environ.get("LUSAUG_DVC_STAGE", ""),
    }
    tags.update({k: str(v) for k, v in extra.items()})
    return tags
