"""The user's checkout: what the workers need from it, and what comes back into it.

Before the run: a clean tree at a commit the workers can fetch, the data sources (``data.dvc``)
pushed to the remote. During the run: each finished item's lock entry merged into ``dvc.lock``
(DVC's own YAML writer, so the file reads as DVC writes it) and its git-tracked outputs
(metrics, tables, the tuned file) written, as soon as it finishes, so a stopped coordinator loses
nothing. At the end: the .gitignore entries DVC adds for cached outputs, in ``dvc repro``'s
order, and ``dvc pull`` of every output: the checkout is then as a local ``dvc repro`` leaves it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lusaug.cluster.item import Own
from lusaug.cluster.plan import Item, Plan
from lusaug.cluster.worktree import (
    git,
    ignore_outputs,
    lock_entry,
    merge_lock_entries,
    read_execution_records,
    read_outputs,
    write_outputs,
)
from lusaug.core.errors import LusaugError

DVC_TIMEOUT_S = 7200  # the final pull of every output of a large study


def head_commit(root: Path) -> str:
    return git("rev-parse", "HEAD", cwd=root).strip()


def check_clean(root: Path, plan: Plan) -> None:
    """Workers run the commit, so the checkout must not differ from it except in what a run
    writes (dvc.lock, git-tracked outputs, .gitignore files)."""
    written = {"dvc.lock"} | {p for i in plan.items for p in i.uncached}
    changed = []
    for line in git("status", "--porcelain", "--untracked-files=no", cwd=root).splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if path in written or Path(path).name == ".gitignore":
            continue
        if any(path.startswith(f"{p}/") for p in written):
            continue
        changed.append(path)
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise LusaugError(
            f"the checkout has uncommitted changes the workers would not see: {shown}. "
            "Commit them (and push, if the workers clone from a shared repository) first"
        )


def repo_url(root: Path, configured: str = "") -> str:
    """Where workers clone from: ``--repo``, else the ``origin`` remote, else this folder
    (workers on this machine or on a shared file system)."""
    if configured:
        return configured
    proc = subprocess.run(
        ["git", "remote", "get-url", "origin"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else str(root)


def own_state(root: Path, item: Item) -> Own:
    entry = lock_entry(root, item.name)
    return Own(entry, read_outputs(root, item.uncached) if entry is not None else {})


def apply_result(root: Path, result: dict) -> None:
    """A finished item's git-tracked outputs and lock entry, written into the checkout."""
    write_outputs(root, result["files"])
    merge_lock_entries(root, {result["item"]: result["entry"]})


def apply_ignores(root: Path, plan: Plan, done: set[str]) -> None:
    """.gitignore entries of the sources and of the items finished in an unbroken prefix of
    ``dvc repro``'s order (the order DVC would have appended them in)."""
    paths = [p for s in plan.sources for p in plan.ignores.get(s, ())]
    for item in plan.items:
        if item.name not in done:
            break
        paths.extend(plan.ignores.get(item.name, ()))
    ignore_outputs(root, paths)


def dvc(root: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True,
        timeout=DVC_TIMEOUT_S, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LusaugError(f"dvc {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


UNCHANGED = re.compile(r"Stage '(.+?)' didn't change, skipping")


def unchanged_items(root: Path, plan: Plan, targets: list[str]) -> set[str]:
    """Items DVC itself finds unchanged here, outputs present or not, whose upstream items are
    all unchanged too (``dvc repro --dry --allow-missing``): nothing to run, no worker needed.
    Their lock entries and git-tracked outputs are already in the checkout."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--dry", "--allow-missing", "--keep-going",
         *targets],
        cwd=root, capture_output=True, text=True, timeout=DVC_TIMEOUT_S, check=False,
    )  # fmt: skip
    # a stage DVC cannot judge without its data (it errs) goes to a worker, which will know
    said = set(UNCHANGED.findall(proc.stdout + proc.stderr))
    unchanged: set[str] = set()
    for item in plan.items:  # plan order: upstream first
        if item.name in said and all(u in unchanged for u in item.upstream):
            unchanged.add(item.name)
    return unchanged


def result_here(root: Path, item: Item) -> dict:
    """What a worker would return for an unchanged item, read from the checkout."""
    own = own_state(root, item)
    return {"item": item.name, "status": "unchanged", "entry": own.entry, "files": own.files,
            "execution": read_execution_records(root, [o.path for o in item.outs]),
            "has_cached_outs": item.has_cached_outs, "worker": "(here)", "seconds": 0.0}  # fmt: skip


def push_sources(root: Path, plan: Plan) -> None:
    """Workers pull the data sources (``data.dvc``) from the remote: make sure it has them."""
    if plan.sources:
        dvc(root, "push", "--quiet", *plan.sources)


def pull_outputs(root: Path, plan: Plan, results: dict[str, dict]) -> None:
    """Every cached output into the checkout, then the items' execution records beside them
    (as a local ``dvc repro`` leaves them: a later local run of a downstream item reads them)."""
    targets = [i.name for i in plan.items if i.has_cached_outs]
    if targets:
        dvc(root, "pull", "--quiet", *targets)
    for result in results.values():
        write_outputs(root, result.get("execution", {}))
