"""What the cluster keeps beside the DVC remote, so no item's state lives on one worker's disk.

``<default remote>/lusaug-cluster/`` (an S3 prefix or a shared folder, through DVC's own
filesystem for that remote, with its endpoint and credentials):

- ``records/<item>/<key>.json``: a finished item (its dvc.lock entry and its git-tracked outputs),
  keyed by the item's inputs (command, dependency hashes, params). DVC's run-cache skips stages
  with ``cache: false`` or ``persist`` outputs (treeverse/dvc#8738, #1852), which is most of this
  pipeline, so a restarted coordinator adopts these instead of running a pushed item again.
- ``checkpoints/<item>/<key>/manifest.json`` + ``checkpoints/objects/<md5>``: the item's
  resume folders (``--checkpoints`` and ``persist`` outputs) while it runs, content-addressed
  (a file already uploaded is not sent again). A rescheduled item restores them on its new
  worker and resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.errors import LusaugError

PREFIX = "lusaug-cluster"


def _safe(name: str) -> str:
    return name.replace("@", "_at_").replace("/", "_")


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Store:
    fs: Any  # a dvc_objects FileSystem (local, S3, ...)
    root: str

    @classmethod
    def for_repo(cls, repo_root: Path | str, remote: str = "") -> Store:
        """The store beside the repository's default DVC remote (or ``remote``)."""
        from dvc.config import NoRemoteError
        from dvc.fs import get_cloud_fs
        from dvc.repo import Repo

        with Repo(str(repo_root)) as repo:
            name = remote or repo.config["core"].get("remote")
            if not name:
                raise LusaugError(
                    "lusaug cluster needs a DVC remote every worker can reach: "
                    "`dvc remote add -d NAME s3://bucket/path` (or a shared folder), then commit "
                    ".dvc/config (README: Scale out)"
                )
            try:
                fs_cls, config, path = get_cloud_fs(repo.config, name=name)
            except NoRemoteError as err:
                raise LusaugError(str(err)) from err
        fs = fs_cls(**config)
        return cls(fs, fs.join(path, PREFIX))

    def _path(self, *parts: str) -> str:
        return self.fs.join(self.root, *parts)

    def _write(self, path: str, data: bytes) -> None:
        """Whole-object write: a reader sees the old or the new content, never a part."""
        self.fs.makedirs(self.fs.parent(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    # --- records of finished items ---------------------------------------------------------

    def record_path(self, item: str, key: str) -> str:
        return self._path("records", _safe(item), f"{key}.json")

    def get_record(self, item: str, key: str) -> dict[str, Any] | None:
        raw = self._read(self.record_path(item, key))
        return None if raw is None else json.loads(raw)

    def put_record(self, item: str, key: str, record: dict[str, Any]) -> None:
        self._write(self.record_path(item, key), json.dumps(record, sort_keys=True).encode())

    # --- checkpoints of running items ------------------------------------------------------

    def _manifest(self, item: str, key: str) -> str:
        return self._path("checkpoints", _safe(item), key, "manifest.json")

    def _object(self, md5: str) -> str:
        return self._path("checkpoints", "objects", md5[:2], md5[2:])

    def save_checkpoint(
        self, root: Path, folders: tuple[str, ...], item: str, key: str, sent: set[str]
    ) -> int:
        """Upload a consistent snapshot of ``folders`` (under ``root``); returns files sent.

        The stages write each file to a temporary path and rename it, so each file is whole;
        the snapshot is taken only if no file changed while it was read (else the next round
        tries again), so the manifest names files that existed together.
        """
        before = _stat_tree(root, folders)
        if not before:
            return 0
        with tempfile.TemporaryDirectory(prefix="lusaug-ckpt-") as tmp:
            staged: dict[str, str] = {}
            for rel in before:
                copy = Path(tmp) / rel
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes((root / rel).read_bytes())
                staged[rel] = file_md5(copy)
            if _stat_tree(root, folders) != before:
                return 0  # written to meanwhile: next round
            count = 0
            for rel, md5 in staged.items():
                if md5 not in sent and not self.fs.exists(self._object(md5)):
                    self.fs.makedirs(self.fs.parent(self._object(md5)), exist_ok=True)
                    self.fs.put_file(str(Path(tmp) / rel), self._object(md5))
                    count += 1
                sent.add(md5)
        self._write(self._manifest(item, key), json.dumps(staged, sort_keys=True).encode())
        return count

    def restore_checkpoint(self, root: Path, item: str, key: str) -> int:
        """Put the last snapshot of ``item`` (same inputs) back under ``root``; files restored."""
        raw = self._read(self._manifest(item, key))
        if raw is None:
            return 0
        manifest: dict[str, str] = json.loads(raw)
        for rel, md5 in manifest.items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
            self.fs.get_file(self._object(md5), str(tmp))
            os.replace(tmp, dest)
        return len(manifest)

    def drop_checkpoint(self, item: str, key: str) -> None:
        """The item finished: its snapshot is no longer needed (objects stay, shared)."""
        path = self._manifest(item, key)
        if self.fs.exists(path):
            self.fs.rm(path)


def _stat_tree(root: Path, folders: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """relpath -> (size, mtime_ns) of every file under ``folders`` (hidden temp files left out)."""
    out: dict[str, tuple[int, int]] = {}
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # atomic_path's temp folders
            for name in files:
                if name.startswith("."):  # temp files being written (and .gitignore)
                    continue
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return dict(sorted(out.items()))
