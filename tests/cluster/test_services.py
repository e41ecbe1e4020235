"""Workers on several hosts share the team's stores or the run refuses to start."""

from __future__ import annotations

import pytest
import yaml

from lusaug.cluster.services import item_environment
from lusaug.core.errors import LusaugError

SERVER = "http://tracking.example:5000"
OPTUNA_PG = "postgresql://lus@db.example:5432/optuna"


def _repo(tmp_path, storage: str, tracking: str = ""):
    params = {"mlflow": {"tracking_uri": tracking}, "tune": {"storage": storage}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_several_hosts_refuse_sqlite_and_local_files_naming_each(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = _repo(tmp_path, "sqlite:///optuna.db")
    with pytest.raises(LusaugError) as err:
        item_environment(repo, {"10.0.0.1", "10.0.0.2"})
    text = str(err.value)
    assert "2 hosts" in text and "MLFLOW_TRACKING_URI" in text and "tune.storage" in text
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    with pytest.raises(LusaugError, match="tune.storage is 'journal:optuna.journal'"):
        item_environment(_repo(tmp_path, "journal:optuna.journal"), {"a", "b"})


def test_several_hosts_with_a_server_and_postgresql_are_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    env = item_environment(_repo(tmp_path, OPTUNA_PG), {"a", "b"})
    assert env == {"MLFLOW_TRACKING_URI": SERVER}


def test_one_host_logs_to_the_checkout_s_own_store_not_each_worktree_s(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = item_environment(_repo(tmp_path, "sqlite:///optuna.db"), {"127.0.0.1"})
    db = tmp_path.resolve() / "mlflow.db"
    assert env == {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    assert db.exists()  # tables created before items open it in parallel
    env = item_environment(_repo(tmp_path, "x", "sqlite:///other.db"), {"127.0.0.1"})
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve() / 'other.db'}"
