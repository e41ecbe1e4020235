"""Which tracking and Optuna stores the workers may share.

Items on several hosts must log to one MLflow tracking server and keep Optuna studies in one
database server: a SQLite file or a local folder on each host would split the runs and the
studies between machines. With every worker on one host the user's own store is used (the
relative default ``mlflow.db`` resolved to the user's checkout, not to each item's worktree).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from lusaug.core.errors import LusaugError

SERVER_SCHEMES = ("http://", "https://", "databricks", "postgresql", "mysql", "mssql", "oracle")


def _is_shared(uri: str) -> bool:
    return uri.startswith(SERVER_SCHEMES)


def _params(root: Path) -> dict:
    path = root / "params.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI, else params ``mlflow.tracking_uri`` ("" = the local mlflow.db)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (
        (_params(root).get("mlflow") or {}).get("tracking_uri") or ""
    )


def _absolute_sqlite(uri: str, root: Path) -> str:
    """``sqlite:///mlflow.db`` (relative) -> the file in the user's checkout."""
    if not uri:
        return f"sqlite:///{root / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{root / uri.removeprefix('sqlite:///')}"
    return uri


def item_environment(root: Path, hosts: set[str]) -> dict[str, str]:
    """The MLflow URI every item logs to; refuses local stores when workers span hosts."""
    root = root.resolve()
    uri = tracking_uri(root)
    storage = str((_params(root).get("tune") or {}).get("storage") or "")
    if len(hosts) > 1:
        problems = []
        if not _is_shared(uri):
            problems.append(
                f"MLflow would log to {uri or 'the local mlflow.db'}: set MLFLOW_TRACKING_URI "
                "(or mlflow.tracking_uri) to the team's tracking server"
            )
        if not _is_shared(storage):
            problems.append(
                f"tune.storage is {storage!r}: set it to a database server "
                "(postgresql://...) and commit params.yaml"
            )
        if problems:
            raise LusaugError(
                f"the workers run on {len(hosts)} hosts ({', '.join(sorted(hosts))}) and need "
                "stores they all share; " + "; ".join(problems) + " (README: For a team)"
            )
    uri = _absolute_sqlite(uri, root)
    if uri.startswith("sqlite:"):
        _create_tables(uri)
    return {"MLFLOW_TRACKING_URI": uri}


def _create_tables(uri: str) -> None:
    """Create a SQLite store's tables before items open it in parallel: two processes that
    find it empty both run MLflow's schema migrations and one of them fails."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
