"""A worker's clone of the repository and each item's own working copy of the commit.

One clone per worker and repository (``<worker dir>/lusaug/repo``), fetched when a commit is
missing; one ``git worktree`` per item attempt, so no two items share a ``dvc.lock``, an
``rw.lock`` or an output folder. Every working copy of the worker shares one DVC cache
(``<worker dir>/lusaug/dvc-cache``): an input pulled once is checked out by copy afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from lusaug.core.errors import LusaugError
from lusaug.core.utils import EXECUTION_FILE, execution_path

_CLONE_LOCK = threading.Lock()  # items of one worker process share its clone
GIT_TIMEOUT_S = 600


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise LusaugError(f"git {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _has_commit(repo: Path, commit: str) -> bool:
    proc = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def clone_with(base: Path, repo_url: str, commit: str) -> Path:
    """The worker's clone of ``repo_url`` holding ``commit`` (cloned or fetched as needed)."""
    repo = base / "repo"
    with _CLONE_LOCK:
        if not (repo / ".git").exists():
            base.mkdir(parents=True, exist_ok=True)
            git("clone", "--quiet", "--no-checkout", repo_url, str(repo))
        if not _has_commit(repo, commit):
            git("fetch", "--quiet", repo_url, "+refs/heads/*:refs/remotes/origin/*", cwd=repo)
        if not _has_commit(repo, commit):
            try:  # servers that allow fetching any reachable commit (GitHub, GitLab)
                git("fetch", "--quiet", repo_url, commit, cwd=repo)
            except LusaugError:
                pass
        if not _has_commit(repo, commit):
            raise LusaugError(
                f"commit {commit[:12]} is not in {repo_url}: push it (git push) and run again"
            )
    return repo


def new_worktree(base: Path, repo: Path, commit: str, item: str) -> Path:
    """A fresh working copy of ``commit`` for one attempt at ``item``, sharing the DVC cache."""
    path = base / "items" / f"{item.replace('@', '_')}-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _CLONE_LOCK:
        git("worktree", "add", "--quiet", "--detach", str(path), commit, cwd=repo)
    cache = base / "dvc-cache"
    cache.mkdir(parents=True, exist_ok=True)
    # .dvc/config.local is git-ignored: the shared cache is this worker's business only
    (path / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")
    return path


def remove_worktree(repo: Path, path: Path) -> None:
    with _CLONE_LOCK:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)],
            cwd=repo,
            capture_output=True,
            check=False,
        )
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True, check=False)


def merge_lock_entries(root: Path, entries: dict[str, dict[str, Any] | None]) -> None:
    """Set (or, for None, drop) stage entries of ``root/dvc.lock`` the way DVC writes them."""
    from dvc.utils.serialize import modify_yaml

    path = root / "dvc.lock"
    with modify_yaml(str(path)) as data:
        if not data:
            data["schema"] = "2.0"
        stages = data.setdefault("stages", {})
        for name, entry in entries.items():
            if entry is None:
                stages.pop(name, None)
            else:
                stages[name] = entry


def lock_entry(root: Path, item: str) -> dict[str, Any] | None:
    """The item's entry, read as DVC reads it (YAML 1.2: an unquoted ``no`` stays a string;
    PyYAML's YAML 1.1 would make it False and DVC would then see changed params)."""
    from dvc.utils.serialize import load_yaml

    path = root / "dvc.lock"
    if not path.exists():
        return None
    data = load_yaml(str(path)) or {}
    entry = data.get("stages", {}).get(item)
    return None if entry is None else json.loads(json.dumps(entry))  # plain dicts and lists


def read_outputs(root: Path, paths: tuple[str, ...]) -> dict[str, bytes]:
    """The git-tracked outputs (files, or every file of a folder) under ``root``."""
    files: dict[str, bytes] = {}
    for rel in paths:
        p = root / rel
        if p.is_file():
            files[rel] = p.read_bytes()
        elif p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                files[f.relative_to(root).as_posix()] = f.read_bytes()
    return files


def read_execution_records(root: Path, paths: list[str]) -> dict[str, bytes]:
    """The execution records (wall times, MLflow run ids) of outputs ``paths`` under ``root``:
    beside a file output, inside a folder output and its sub-folders. Git and DVC ignore them,
    so only an item's result carries them to the items downstream (the filter logs into its
    generator's MLflow run, named by the generator's record) and to the checkout."""
    files: dict[str, bytes] = {}
    for rel in paths:
        p = root / rel
        found = p.rglob(f"*{EXECUTION_FILE}") if p.is_dir() else [execution_path(p)]
        for f in sorted(q for q in found if q.is_file()):
            files[f.relative_to(root).as_posix()] = f.read_bytes()
    return files


def write_outputs(root: Path, files: dict[str, bytes]) -> None:
    """Write each file to a temporary sibling and rename it (a reader never sees a part)."""
    for rel, data in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)


def ignore_outputs(root: Path, paths: list[str]) -> None:
    """Git-ignore cached outputs exactly as DVC does (``/name`` in the parent's .gitignore,
    appended, unless git ignores it already)."""
    from scmrepo.git import Git

    scm = Git(str(root))
    try:
        for rel in paths:
            path = (root / rel).resolve()
            # an output not here (yet): DVC writes the entry once it exists, same file, same line
            path.parent.mkdir(parents=True, exist_ok=True)
            scm.ignore(str(path))
    finally:
        scm.close()
