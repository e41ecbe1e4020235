"""Records and checkpoints beside the DVC remote (a local folder remote, DVC's own filesystem)."""

from __future__ import annotations

import os
import subprocess
import sys

from dvc_objects.fs.local import LocalFileSystem

from lusaug.cluster.store import PREFIX, Store


def _store(tmp_path) -> Store:
    return Store(LocalFileSystem(), str(tmp_path / "remote" / PREFIX))


def test_the_store_sits_beside_the_repository_s_default_remote(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "r", str(tmp_path / "rem")],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)  # fmt: skip
    store = Store.for_repo(repo)
    assert os.path.normpath(store.root) == str(tmp_path / "rem" / PREFIX)
    store.put_record("train@0", "k1", {"entry": {"cmd": "x"}, "files": {}})
    assert (tmp_path / "rem" / PREFIX / "records" / "train_at_0" / "k1.json").is_file()
    assert store.get_record("train@0", "k1") == {"entry": {"cmd": "x"}, "files": {}}
    assert store.get_record("train@0", "other") is None


def test_a_checkpoint_round_trips_and_sends_each_file_once(tmp_path):
    store, work = _store(tmp_path), tmp_path / "work"
    runs = work / "models/classifiers/fold-0"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "last.pt").write_bytes(b"epoch 1")
    (runs / "a" / ".last.pt.x1y2.pt").write_bytes(b"half-written")  # atomic_path's temp file
    (runs / "b").mkdir()
    (runs / "b" / "model.pt").write_bytes(b"finished")
    sent: set[str] = set()
    folders = ("models/classifiers/fold-0", "models/checkpoints/none")
    assert store.save_checkpoint(work, folders, "train@0", "key", sent) == 2
    (runs / "a" / "last.pt").write_bytes(b"epoch 2")
    assert store.save_checkpoint(work, folders, "train@0", "key", sent) == 1  # only the change

    elsewhere = tmp_path / "other-worker"
    assert store.restore_checkpoint(elsewhere, "train@0", "key") == 2
    restored = elsewhere / "models/classifiers/fold-0"
    assert (restored / "a" / "last.pt").read_bytes() == b"epoch 2"
    assert (restored / "b" / "model.pt").read_bytes() == b"finished"
    assert not list(restored.rglob(".*"))
    assert store.restore_checkpoint(elsewhere, "train@0", "other inputs") == 0
    store.drop_checkpoint("train@0", "key")
    assert store.restore_checkpoint(tmp_path / "third", "train@0", "key") == 0
