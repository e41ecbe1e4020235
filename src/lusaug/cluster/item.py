"""The Dask task: one stage item in its own working copy on whichever worker runs it.

1. A fresh worktree of the commit; the lock entries, git-tracked outputs and .gitignore entries
   the user's workspace would hold at this point of a ``dvc repro``; the upstream items' cached
   outputs pulled from the DVC remote.
2. The item's inputs key (:mod:`.stagekey`). A record of a finished run with that key (a run a
   stopped coordinator never collected) is adopted: nothing runs again.
3. Its checkpoints restored from the store (a rescheduled item resumes), then
   ``dvc repro --pull --single-item ITEM`` under the guard, its checkpoints copied to the store
   every ``sync_s`` seconds, and ``dvc push --run-cache ITEM``.
4. The record written, and the lock entry + git-tracked outputs returned to the coordinator.

A stage error raises :class:`ItemFailed` (name + log tail); Dask does not retry it. A worker
that dies takes the guarded stage with it and Dask reschedules the item.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusaug.cluster import guard as guard_module
from lusaug.cluster import stagekey as stagekey_module
from lusaug.cluster.plan import Item
from lusaug.cluster.store import Store
from lusaug.cluster.worktree import (
    clone_with,
    ignore_outputs,
    lock_entry,
    merge_lock_entries,
    new_worktree,
    read_execution_records,
    read_outputs,
    remove_worktree,
    write_outputs,
)

LOG_TAIL_LINES = 40  # lines of an item's log shown when it fails
POLL_S = 1.0  # how often a running item checks for cancellation
DVC_TIMEOUT_S = 3600  # a pull or push that takes longer than this is stuck
TOPIC_PREFIX = "lusaug-cluster"
_STATUS = [  # dvc repro's log line -> what happened to the item
    (re.compile(r"didn't change, skipping"), "unchanged"),
    (re.compile(r"is cached - skipping run"), "run-cache"),
]


class ItemFailed(Exception):
    """A stage error: the item's name and the tail of its log (not retried)."""

    def __init__(self, item: str, detail: str) -> None:
        super().__init__(item, detail)
        self.item, self.detail = item, detail

    def __str__(self) -> str:
        return f"{self.item} failed:\n{self.detail}"


class ItemCancelled(Exception):
    """The coordinator stopped the run (or went away) while the item ran."""


@dataclass(frozen=True)
class RunContext:
    """What every item of one run shares."""

    run_id: str
    repo_url: str
    commit: str
    env: dict[str, str] = field(default_factory=dict)  # forwarded to every stage process
    sync_s: float = 30.0  # checkpoint copy interval
    keep_worktrees: bool = False

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}-{self.run_id}"


@dataclass(frozen=True)
class Own:
    """The item's own state in the user's checkout: its lock entry and git-tracked outputs."""

    entry: dict[str, Any] | None
    files: dict[str, bytes]


def encode_files(files: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in files.items()}


def decode_files(files: dict[str, str]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in files.items()}


class _Attempt:
    """One attempt at an item on this worker: its worktree, log and events."""

    def __init__(self, ctx: RunContext, item: Item) -> None:
        from distributed import get_worker

        self.ctx, self.item = ctx, item
        self.worker = get_worker()
        self.key = self.worker.get_current_task()
        self.base = Path(self.worker.local_directory) / "lusaug"
        self.repo = clone_with(self.base, ctx.repo_url, ctx.commit)
        self.wt = new_worktree(self.base, self.repo, ctx.commit, item.name)
        self.log = self.base / "logs" / f"{self.wt.name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()  # an item with nothing to pull (check_params) writes no line before its run
        self.env = {
            **os.environ,
            **ctx.env,
            "PYTHONPATH": os.pathsep.join(
                [str(self.wt / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),  # the commit's own code, whatever the worker has installed
            "PYTHONUNBUFFERED": "1",
        }
        self.t0 = time.monotonic()

    def event(self, kind: str, **info: Any) -> None:
        msg = {"item": self.item.name, "kind": kind, "worker": self.worker.address}
        self.worker.log_event(self.ctx.topic, {**msg, "host": socket.gethostname(), **info})

    def cancelled(self) -> bool:
        ts = self.worker.state.tasks.get(self.key)
        return ts is None or ts.state in ("cancelled", "released", "forgotten")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def dvc(self, *args: str, check: bool = True) -> bool:
        """``dvc ARGS`` in the worktree (guarded), output appended to the item's log."""
        ok = self.guarded([sys.executable, "-m", "dvc", *args], timeout_s=DVC_TIMEOUT_S) == 0
        if check and not ok:
            raise ItemFailed(self.item.name, f"dvc {' '.join(args)} failed\n{self.tail()}")
        return ok

    def guarded(self, cmd: list[str], timeout_s: float | None = None, every: Any = None) -> int:
        """Run ``cmd`` in its own process group that dies with this worker; poll for
        cancellation (and call ``every()`` between polls)."""
        with self.log.open("a") as log:
            log.write(f"[{time.strftime('%H:%M:%S')}] $ {' '.join(cmd)}\n")
            log.flush()
            wrapped = guard_module.guarded(cmd)
            proc = subprocess.Popen(
                wrapped, cwd=self.wt, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            start = time.monotonic()
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                if self.cancelled() or (timeout_s and time.monotonic() - start > timeout_s):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    if self.cancelled():
                        raise ItemCancelled(self.item.name) from None
                    return -signal.SIGKILL
                if every is not None:
                    every()


def _prepare(a: _Attempt, own: Own, ignores: list[str], upstream: tuple[dict, ...]) -> None:
    """The worktree as the user's workspace would be when ``dvc repro`` reaches the item."""
    entries: dict[str, dict[str, Any] | None] = {r["item"]: r["entry"] for r in upstream}
    entries[a.item.name] = own.entry
    merge_lock_entries(a.wt, entries)
    for r in upstream:
        write_outputs(a.wt, r["files"])
        write_outputs(a.wt, r.get("execution", {}))
    if own.entry is not None:
        write_outputs(a.wt, own.files)
    ignore_outputs(a.wt, ignores)
    pulls = [r["item"] for r in upstream if r["has_cached_outs"]] + list(a.item.sources)
    if pulls:
        a.dvc("pull", "--quiet", *pulls)


def _stage_key(a: _Attempt) -> str:
    out = subprocess.run(
        [sys.executable, stagekey_module.__file__, a.item.name],
        cwd=a.wt, env=a.env, capture_output=True, text=True, timeout=DVC_TIMEOUT_S, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise ItemFailed(a.item.name, f"its inputs cannot be hashed:\n{out.stderr[-3000:]}")
    return out.stdout.strip()


def _adopt(a: _Attempt, store: Store, key: str) -> bool:
    """A record of this item with these inputs: take its entry and outputs, run nothing."""
    record = store.get_record(a.item.name, key)
    if record is None:
        return False
    # its outputs went to the remote before the record was written (dvc push, then the record)
    merge_lock_entries(a.wt, {a.item.name: record["entry"]})
    write_outputs(a.wt, decode_files(record["files"]))
    write_outputs(a.wt, decode_files(record.get("execution", {})))
    return True


def _repro(a: _Attempt, store: Store, key: str) -> str:
    """Restore checkpoints, ``dvc repro`` the item with checkpoint copies; what happened."""
    sent: set[str] = set()
    last = [time.monotonic()]
    if a.item.checkpoints:
        if own_persist(a.item) and lock_entry(a.wt, a.item.name) is not None:
            a.dvc("pull", "--quiet", a.item.name, check=False)  # its previous outputs, if any
        restored = store.restore_checkpoint(a.wt, a.item.name, key)
        if restored:
            a.event("resumed", files=restored)

    def sync() -> None:
        if a.item.checkpoints and time.monotonic() - last[0] >= a.ctx.sync_s:
            last[0] = time.monotonic()
            store.save_checkpoint(a.wt, a.item.checkpoints, a.item.name, key, sent)

    start = a.log.stat().st_size
    cmd = [sys.executable, "-m", "dvc", "repro", "--pull", "--single-item", a.item.name]
    if a.guarded(cmd, every=sync) != 0:
        raise ItemFailed(a.item.name, a.tail())
    with a.log.open(errors="replace") as f:
        f.seek(start)
        text = f.read()
    return next((status for rx, status in _STATUS if rx.search(text)), "ran")


def own_persist(item: Item) -> bool:
    return any(o.persist for o in item.outs)


def run_item(ctx: RunContext, item: Item, own: Own, ignores: list[str], *upstream: dict) -> dict:
    """Run one item on this worker; returns its result for the coordinator and downstream."""
    a = _Attempt(ctx, item)
    a.event("started", worktree=str(a.wt))
    try:
        _prepare(a, own, ignores, upstream)
        store = Store.for_repo(a.wt)
        key = _stage_key(a)
        if _adopt(a, store, key):
            status = "adopted"
        else:
            status = _repro(a, store, key)
            a.dvc("push", "--quiet", "--run-cache", a.item.name)
        entry = lock_entry(a.wt, item.name)
        files = read_outputs(a.wt, item.uncached)
        execution = read_execution_records(a.wt, [o.path for o in item.outs])
        if status != "adopted":
            record = {"entry": entry, "files": encode_files(files), "commit": ctx.commit}
            record["execution"] = encode_files(execution)
            store.put_record(item.name, key, record)
            store.drop_checkpoint(item.name, key)
    except ItemCancelled:
        a.event("cancelled")
        raise
    except Exception:
        a.event("failed", log=str(a.log))
        raise
    if not ctx.keep_worktrees:
        remove_worktree(a.repo, a.wt)
    return {
        "item": item.name,
        "status": status,
        "entry": entry,
        "files": files,
        "execution": execution,
        "has_cached_outs": item.has_cached_outs,
        "worker": a.worker.address,
        "seconds": round(time.monotonic() - a.t0, 1),
        "key": key,
    }
