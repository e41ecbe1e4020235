"""The outputs DVC removes before it runs a stage, and how to give them back after a failure.

``dvc repro`` deletes a stage's outputs (all but ``persist`` ones) before it runs the stage's
command, and writes the stage's ``dvc.lock`` entry only when the command succeeds. So after a
failed or interrupted run, a stage whose lock entry is unchanged did not finish, and its
previous outputs are exactly what that entry describes:

- cached outputs are in the DVC cache under the entry's hashes: ``dvc checkout --force`` puts
  them back;
- uncached outputs (metrics, tables: git-tracked) are in no cache, so :func:`take_snapshot`
  copies them aside before the run. A copy, not ``git checkout``: after a run that was not
  committed, git holds an older version than the one the run removed.

Only outputs the run touched (a cheap signature of size, mtime and inode per file differs from
the one taken before the run) are put back, so a stage that never started keeps whatever is in
its outputs, hand edits included. ``persist`` outputs are left alone: DVC never removes them
and the stages that keep them (``train``'s run folders, the base model) resume from what the
failed run left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lusaug.cluster.plan import Plan

LOCK_FILE = "dvc.lock"


def read_lock(root: Path) -> dict[str, Any]:
    """Stage (item) name -> its ``dvc.lock`` entry ({} before the first run)."""
    path = root / LOCK_FILE
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {}) or {}


def signature(path: Path) -> str:
    """A digest of what is at ``path``: every file's relative path, size, mtime and inode.

    DVC removes an output and the stage writes it anew, so any of these changes when a run
    touched it; reading file contents is not needed (an output can be gigabytes).
    """
    if not path.exists() and not path.is_symlink():
        return "missing"
    h = hashlib.sha1()
    files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.lstat()
        rel = f.relative_to(path).as_posix() if path.is_dir() else ""
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return ("dir:" if path.is_dir() else "file:") + h.hexdigest()


@dataclass(frozen=True)
class Output:
    item: str  # the stage item that writes it (``export``, ``train@0``)
    path: str  # relative to the repository
    cached: bool  # in the DVC cache (False: git-tracked, copied aside before the run)


@dataclass
class Snapshot:
    """The workspace before a run: lock entries, output signatures, copies of uncached outs."""

    root: Path
    lock: dict[str, Any]
    outputs: list[Output]
    signatures: dict[str, str]
    copies: Path  # folder holding the uncached outputs as they were, by relative path


def restorable_outputs(plan: Plan) -> list[Output]:
    """Every output DVC removes before its stage runs (all but ``persist`` ones)."""
    return [
        Output(item.name, out.path, out.cached)
        for item in plan.items
        for out in item.outs
        if not out.persist
    ]


def take_snapshot(root: Path, plan: Plan, copies: Path) -> Snapshot:
    """Record the workspace before ``dvc repro``; uncached outputs are copied to ``copies``."""
    outputs = restorable_outputs(plan)
    signatures = {o.path: signature(root / o.path) for o in outputs}
    for o in outputs:
        src = root / o.path
        if o.cached or not src.exists():
            continue
        dest = copies / o.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest)
    return Snapshot(root, read_lock(root), outputs, signatures, copies)


@dataclass
class Restored:
    """What :func:`restore` did, for the one-line summary."""

    items: list[str] = field(default_factory=list)  # stages whose outputs were put back
    from_cache: list[str] = field(default_factory=list)
    from_copy: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # half-written outputs of a new attempt
    failed: list[str] = field(default_factory=list)  # could not be restored, with the reason
    finished: list[str] = field(default_factory=list)  # stages the run finished: kept as new

    @property
    def paths(self) -> list[str]:
        return [*self.from_cache, *self.from_copy, *self.removed]


def _replace(src: Path, dest: Path) -> None:
    """Put ``src`` (file or folder) at ``dest``, whatever is there now."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copy2(src, dest)


def _checkout(root: Path, paths: list[str]) -> str:
    """``dvc checkout --force PATHS`` in ``root``; '' on success, else DVC's last error line."""
    if not paths:
        return ""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "checkout", "--force", *paths],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    if proc.returncode == 0:
        return ""
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"dvc checkout exited {proc.returncode}"


def restore(snapshot: Snapshot) -> Restored:
    """Give back the previous outputs of every stage the run did not finish (see the module)."""
    root, done = snapshot.root, Restored()
    lock_now = read_lock(root)
    unfinished = {name for name, entry in snapshot.lock.items() if lock_now.get(name) == entry}
    done.finished = sorted(n for n in lock_now if lock_now[n] != snapshot.lock.get(n))
    to_checkout: list[str] = []
    for out in snapshot.outputs:
        if out.item not in unfinished:
            continue  # finished in this run (new outputs), or never run before (nothing to give)
        path = root / out.path
        before = snapshot.signatures[out.path]
        if signature(path) == before:
            continue  # not touched by the run
        if out.item not in done.items:
            done.items.append(out.item)
        if out.cached:
            to_checkout.append(out.path)
        elif before == "missing":
            _replace_missing(path)
            done.removed.append(out.path)
        else:
            _replace(snapshot.copies / out.path, path)
            done.from_copy.append(out.path)
    error = _checkout(root, to_checkout)
    if error:
        done.failed += [f"{p} ({error})" for p in to_checkout if not (root / p).exists()]
        to_checkout = [p for p in to_checkout if (root / p).exists()]
    done.from_cache += to_checkout
    return done


def _replace_missing(path: Path) -> None:
    """The output did not exist before the run: remove what the failed attempt left."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
