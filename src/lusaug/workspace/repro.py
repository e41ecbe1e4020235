"""``lusaug repro``: ``dvc repro`` that leaves the previous outputs in place when it fails.

1. Read the pipeline from DVC (every stage item and its outputs) and take a
   :class:`~lusaug.workspace.outputs.Snapshot` (lock entries, output signatures, copies of the
   uncached outputs) in ``.dvc/tmp``.
2. Run ``dvc repro ARGS`` as a child process in its own process group (its output goes straight
   to the terminal); Ctrl-C and SIGTERM to the wrapper go to dvc and the stage it runs, and the
   wrapper waits for them to stop.
3. On success: drop the dvc.lock entries of stages dvc.yaml no longer defines (DVC keeps them)
   and the copies. On failure or interruption: restore the previous outputs of every stage that
   did not finish, print one line saying which, and exit with DVC's code. When the data a ``.dvc`` file tracks is missing or empty (a fresh clone),
   also say how to get it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml

from lusaug.cluster.plan import read_plan
from lusaug.cluster.worktree import merge_lock_entries
from lusaug.workspace.outputs import Restored, restore, take_snapshot

SHOWN_PATHS = 4  # paths named in the summary line; the rest are counted
DATA_HINT = (
    "run `make data` (the embedded phantom), `lusaug import PATH` (real data) or `dvc pull` "
    "(the project's DVC remote) first"
)


def empty_sources(root: Path) -> list[str]:
    """Paths tracked by the repository's ``.dvc`` files that are missing or empty."""
    found = []
    for dvc_file in sorted(root.glob("*.dvc")):
        if not dvc_file.is_file():  # .dvc/ itself
            continue
        try:
            outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
        except yaml.YAMLError:
            continue
        for out in outs:
            path = root / out.get("path", "")
            if not path.exists() or (path.is_dir() and not any(path.iterdir())):
                found.append(out["path"])
    return found


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    return shown + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else "")


def summary(code: int, restored: Restored) -> str:
    """One line: how dvc repro ended and what came back from where."""
    head = f"lusaug repro: dvc repro failed (exit {code})"
    if not restored.items and not restored.failed:
        return f"{head}; no output of an unfinished stage was touched, nothing to restore"
    parts = []
    if restored.from_cache:
        parts.append(f"{_listed(restored.from_cache)} from the DVC cache")
    if restored.from_copy:
        parts.append(f"{_listed(restored.from_copy)} from the copy taken before the run")
    if restored.removed:
        parts.append(f"removed the half-written {_listed(restored.removed)}")
    text = f"{head}; restored the previous outputs of {', '.join(restored.items)}: " + "; ".join(
        parts
    )
    if restored.failed:
        text += f"; could NOT restore {_listed(restored.failed)}"
    return text


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


@contextlib.contextmanager
def _forwarding_sigterm(proc: subprocess.Popen) -> Iterator[None]:
    """SIGTERM to the wrapper goes to dvc and its stage, which stop; the wrapper then restores."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (a test calling repro() from a thread)
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: _signal_group(proc, signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_dvc(root: Path, args: list[str]) -> int:
    """``dvc repro ARGS`` in ``root``; its exit code (after Ctrl-C or SIGTERM too).

    dvc runs in a process group of its own, and a signal to the wrapper goes to that whole
    group: to dvc *and* the stage command it runs. SIGTERM kills dvc at once, and a stage left
    running would go on writing into outputs the wrapper has just restored.
    """
    cmd = [sys.executable, "-m", "dvc", "repro", *args]
    proc = subprocess.Popen(cmd, cwd=root, start_new_session=True)
    with _forwarding_sigterm(proc):
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl-C reaches the terminal's group, the wrapper only
                _signal_group(proc, signal.SIGINT)


def prune_stale_lock_entries(root: Path, defined: set[str]) -> list[str]:
    """Drop the dvc.lock entries of stages that ``dvc.yaml`` no longer defines (DVC keeps them
    forever, and they record results no stage makes any more); the names dropped."""
    from dvc.utils.serialize import load_yaml

    lock = root / "dvc.lock"
    if not lock.is_file():
        return []
    stale = sorted(set((load_yaml(str(lock)) or {}).get("stages") or {}) - defined)
    if stale:
        merge_lock_entries(root, dict.fromkeys(stale))  # None: drop the entry
    return stale


def repro(root: Path, args: list[str], echo=print) -> int:
    """Run ``dvc repro ARGS`` in ``root``, restoring the outputs a failure removed.

    Returns dvc's exit code. ``echo`` prints the summary line (stderr in the CLI).
    """
    root = Path(root).resolve()
    plan = read_plan(root)  # every stage: any of them may be in the run
    tmp_root = root / ".dvc" / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lusaug-repro-", dir=tmp_root) as tmp:
        snapshot = take_snapshot(root, plan, Path(tmp))
        code = _run_dvc(root, args)
        if code == 0:
            stale = prune_stale_lock_entries(root, {item.name for item in plan.items})
            if stale:
                why = "dvc.yaml no longer defines them"
                echo(f"lusaug repro: dropped the dvc.lock entries of {_listed(stale)}: {why}")
            return 0
        restored = restore(snapshot)
    echo(summary(code, restored))
    empty = empty_sources(root)
    if empty:
        echo(f"lusaug repro: {', '.join(empty)} is missing or empty: {DATA_HINT}")
    return code
