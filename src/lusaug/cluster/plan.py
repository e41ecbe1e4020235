"""The items to run, read from DVC itself: the stages ``dvc repro TARGETS`` would visit, in its
order, each with its upstream items, its outputs and where it keeps checkpoints.

Nothing here knows a stage by name: stage names, commands and outputs come from ``dvc.yaml``
through DVC's own index and graph (``dvc.repo.reproduce.plan_repro``, the function ``dvc repro``
plans with), so a stage added to ``dvc.yaml`` is scheduled like the others.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusaug.core.errors import LusaugError

CHECKPOINTS_FLAG = "--checkpoints"  # a stage script's resume folder (not a DVC output)


@dataclass(frozen=True)
class Out:
    """One output of an item, as dvc.yaml declares it (path relative to the repository)."""

    path: str
    cached: bool  # in the DVC cache and remote (False: git-tracked, e.g. metrics)
    persist: bool  # kept by DVC before a run (a stage that resumes from its own output)


@dataclass(frozen=True)
class Item:
    """One stage item (``train@0``) and what a worker needs to know about it."""

    name: str  # DVC's address: ``train@0``, ``generate@1-ddpm_all``, ``evaluate``
    stage: str  # the dvc.yaml stage it belongs to: ``train``
    upstream: tuple[str, ...]  # items it depends on (direct), in plan order
    sources: tuple[str, ...]  # .dvc files it depends on (``data.dvc``): pulled, never run
    outs: tuple[Out, ...]
    checkpoints: tuple[str, ...]  # folders to keep in the store while it runs (resume)
    index: int  # position in dvc repro's order

    @property
    def uncached(self) -> tuple[str, ...]:
        return tuple(o.path for o in self.outs if not o.cached)

    @property
    def has_cached_outs(self) -> bool:
        return any(o.cached for o in self.outs)


@dataclass
class Plan:
    """Every item of one ``lusaug cluster repro``, in the order ``dvc repro`` runs them."""

    root: Path
    items: list[Item]
    # cached output paths DVC git-ignores, per item, in plan order (sources first)
    ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Item:
        return self._by_name[name]

    @property
    def _by_name(self) -> dict[str, Item]:
        return {i.name: i for i in self.items}

    def ignores_before(self, item: Item) -> list[str]:
        """Cached outputs of every source and every item ``dvc repro`` handles before ``item``:
        the .gitignore entries its workspace would hold when the item runs (a .gitignore inside
        a dependency folder counts in that folder's hash)."""
        paths = [p for s in self.sources for p in self.ignores.get(s, ())]
        for other in self.items[: item.index]:
            paths.extend(self.ignores.get(other.name, ()))
        return paths

    def downstream_depth(self) -> dict[str, int]:
        """Length of the longest chain of items that waits on each item (itself included):
        the priority that starts the critical path first."""
        below: dict[str, list[str]] = {i.name: [] for i in self.items}
        for i in self.items:
            for up in i.upstream:
                below[up].append(i.name)
        depth: dict[str, int] = {}
        for i in reversed(self.items):  # plan order puts every item after its upstream
            depth[i.name] = 1 + max((depth[d] for d in below[i.name]), default=0)
        return depth


def _checkpoint_dirs(cmd: Any) -> list[str]:
    """The value after ``--checkpoints`` in a stage command (the resume folder it writes)."""
    text = " ".join(cmd) if isinstance(cmd, list) else str(cmd or "")
    words = shlex.split(text)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == CHECKPOINTS_FLAG]


def _rel(repo_root: str, fs_path: str) -> str:
    return Path(os.path.relpath(fs_path, repo_root)).as_posix()


def read_plan(root: Path | str, targets: list[str] | None = None) -> Plan:
    """The items ``dvc repro TARGETS`` would visit (all of dvc.yaml without targets)."""
    from dvc.dvcfile import PROJECT_FILE
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro
    from dvc.stage import PipelineStage

    root = Path(root).resolve()
    try:  # DVC resolves targets (dvc.yaml, train@0) against the working directory
        with contextlib.chdir(root), Repo(str(root)) as repo:
            stages = collect_stages(repo, targets or [PROJECT_FILE])
            graph = get_active_graph(repo.index.graph)
            steps = plan_repro(graph, stages)
            runnable = [s for s in steps if isinstance(s, PipelineStage) and not s.frozen]
            names = {s.addressing for s in runnable}
            sources = [s for s in steps if s not in runnable]
            items: list[Item] = []
            ignores: dict[str, tuple[str, ...]] = {}
            for stage in steps:
                ignores[stage.addressing] = tuple(
                    _rel(repo.root_dir, o.fs_path) for o in stage.outs if o.use_scm_ignore
                )
            for stage in runnable:
                upstream = [s for s in graph.successors(stage)]  # DVC: edges point upstream
                outs = tuple(
                    Out(_rel(repo.root_dir, o.fs_path), bool(o.use_cache), bool(o.persist))
                    for o in stage.outs
                )
                checkpoints = [o.path for o in outs if o.persist] + _checkpoint_dirs(stage.cmd)
                items.append(
                    Item(
                        name=stage.addressing,
                        stage=stage.name.split("@")[0],
                        upstream=tuple(s.addressing for s in runnable if s in upstream),
                        sources=tuple(s.addressing for s in sources if s in upstream and s.outs),
                        outs=outs,
                        checkpoints=tuple(checkpoints),
                        index=len(items),
                    )
                )
            assert len(names) == len(items)
    except DvcException as err:
        raise LusaugError(f"DVC cannot plan the run in {root}: {err}") from err
    return Plan(root, items, ignores, tuple(s.addressing for s in sources if s.outs))
