"""``lusaug cluster repro``: submit each item as a Dask future once its upstream items are done,
collect results into the user's checkout, stop on the first stage error.

The coordinator submits an item when every upstream result is in, passing those results by
value, and Dask places the ready items, the longest chain of waiting items first (``priority``).
A worker that dies has its running item rescheduled on another
(``distributed.scheduler.allowed-failures`` deaths per item, then the run stops); results of
finished items live in the coordinator, so nothing finished is recomputed. A stage error is
not retried: it cancels the items that have not started and lets the running ones finish into
the checkout. A stopped coordinator loses nothing: finished items are in the checkout, items that
finish meanwhile leave a record, and a restart re-submits everything, each item adopting its
record or finding itself unchanged (DVC's own check) instead of running again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lusaug.cluster.checkout import (
    apply_ignores,
    apply_result,
    check_clean,
    head_commit,
    own_state,
    pull_outputs,
    push_sources,
    repo_url,
    result_here,
    unchanged_items,
)
from lusaug.cluster.item import ItemCancelled, ItemFailed, RunContext, run_item
from lusaug.cluster.plan import Item, Plan, read_plan
from lusaug.cluster.progress import Progress
from lusaug.cluster.services import item_environment
from lusaug.core.errors import LusaugError

WORKER_WAIT_S = 120  # a scheduler with no worker after this long is an error
GPU = "GPU"  # the resource name GPU workers declare: dask worker --resources GPU=1


@dataclass
class Options:
    targets: list[str] = field(default_factory=list)
    scheduler: str = ""  # address; "" = a LocalCluster on this machine
    workers: int = 2  # LocalCluster size
    repo: str = ""  # where workers clone from ("" = origin, else this folder)
    gpu_stages: tuple[str, ...] = ()  # stages whose items need resources={"GPU": 1}
    pull: bool = True  # dvc pull every output into the checkout at the end
    sync_s: float = 30.0  # checkpoint copy interval
    keep_worktrees: bool = False
    dashboard: str = ":8787"  # LocalCluster dashboard address ("" = none)


@dataclass
class Summary:
    results: dict[str, dict[str, Any]]
    seconds: float

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


def _client(opts: Options) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if opts.scheduler:
        return Client(opts.scheduler), None
    cluster = LocalCluster(
        n_workers=opts.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=opts.dashboard or None,
    )  # fmt: skip
    return Client(cluster), cluster


def _hosts(client: Any) -> set[str]:
    return {w["host"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}


def _failure(plan: Plan, name: str, exc: BaseException) -> LusaugError:
    from distributed import KilledWorker

    if isinstance(exc, ItemFailed):
        return LusaugError(f"{exc.item} failed; the run stopped. Its log ends:\n{exc.detail}")
    if isinstance(exc, KilledWorker):
        return LusaugError(
            f"{name} was running on every worker that died ({exc}); the run stopped. "
            "Its checkpoints are in the store: run again to resume"
        )
    return LusaugError(f"{name} failed; the run stopped: {type(exc).__name__}: {exc}")


def _collect(root: Path, name: str, result: dict, progress: Progress, results: dict) -> None:
    apply_result(root, result)
    results[name] = result
    progress.update(name, "done", result["worker"], f"{result['status']}, {result['seconds']} s")


def _drain(client: Any, root: Path, futures: dict[str, Any], progress: Progress, results: dict):
    """After a stage error: cancel the items that have not started, and let the running ones
    finish into the checkout. Killing them would throw their work away (and leave finished
    MLflow runs that the next run repeats)."""
    from distributed import as_completed

    open_ = {n: f for n, f in futures.items() if not f.done()}
    running = {n: f for n, f in open_.items() if progress.rows[n].state == "running"}
    waiting = [f for n, f in open_.items() if n not in running]
    if waiting:
        client.cancel(waiting)
        for name in open_:
            if name not in running:
                progress.update(name, "cancelled")
    if running:
        listed = ", ".join(sorted(running))
        progress.say(f"the run stops: running items finish first, so their work is kept: {listed}")
    names = {f.key: n for n, f in running.items()}
    for future in as_completed(list(running.values())):
        name = names[future.key]
        if future.status == "finished":
            _collect(root, name, future.result(), progress, results)
        else:
            progress.update(name, "failed", detail=type(future.exception()).__name__)


def _never_started(unsubmitted: list[Item], progress: Progress) -> None:
    for item in unsubmitted:
        progress.update(item.name, "cancelled")


def cluster_repro(root: Path | str, opts: Options, out: TextIO | None = None) -> Summary:
    """Run the items ``dvc repro TARGETS`` would run, on Dask workers; results into ``root``."""
    import time

    from distributed import as_completed

    t0 = time.monotonic()
    root = Path(root).resolve()
    plan = read_plan(root, opts.targets)
    check_clean(root, plan)
    commit = head_commit(root)
    push_sources(root, plan)
    client, cluster = _client(opts)
    progress = Progress([i.name for i in plan.items], out)
    futures: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    unsubmitted: list[Item] = []  # items waiting for an upstream result, in plan order
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        env = item_environment(root, _hosts(client))
        ctx = RunContext(uuid.uuid4().hex[:12], repo_url(root, opts.repo), commit, env,
                         opts.sync_s, opts.keep_worktrees)  # fmt: skip
        progress.say(
            f"commit {commit[:12]} from {ctx.repo_url}; {len(plan.items)} items; "
            f"dashboard: {client.dashboard_link if opts.scheduler or opts.dashboard else 'off'}"
        )

        def on_event(event: tuple[float, dict]) -> None:
            msg = event[1]
            if msg["kind"] == "started":
                progress.update(msg["item"], "running", msg["worker"])
            elif msg["kind"] == "resumed":
                progress.update(msg["item"], "running", detail=f"resumed: {msg['files']} files")

        client.subscribe_topic(ctx.topic, on_event)
        depth = plan.downstream_depth()
        here = unchanged_items(root, plan, opts.targets)
        for item in plan.items:
            if item.name in here:
                results[item.name] = result_here(root, item)
                progress.update(item.name, "done", "", "unchanged, checked here by dvc")
        unsubmitted += [item for item in plan.items if item.name not in here]
        names: dict[str, str] = {}

        def submit_ready() -> list[Any]:
            """Submit the items whose upstream results are all in: their results go by value,
            so a worker that dies loses only its running item, never a finished one's result
            that Dask would otherwise recompute."""
            ready = [i for i in unsubmitted if all(u in results for u in i.upstream)]
            for item in ready:
                unsubmitted.remove(item)
                futures[item.name] = client.submit(
                    run_item, ctx, item, own_state(root, item), plan.ignores_before(item),
                    *[results[u] for u in item.upstream],
                    key=f"lusaug-{item.name}-{ctx.run_id}", pure=False, priority=depth[item.name],
                    resources={GPU: 1} if item.stage in opts.gpu_stages else None,
                )  # fmt: skip
                names[futures[item.name].key] = item.name
            return [futures[i.name] for i in ready]

        completed = as_completed(submit_ready())
        for future in completed:
            name = names[future.key]
            if future.status != "finished":
                exc = future.exception()
                if isinstance(exc, ItemCancelled):
                    continue
                progress.update(name, "failed", detail=type(exc).__name__)
                _drain(client, root, futures, progress, results)
                raise _failure(plan, name, exc)  # `finally` marks the unsubmitted cancelled
            _collect(root, name, future.result(), progress, results)
            # the result is ours now: a future still held would make Dask recompute the item
            # if the worker holding its result died
            futures.pop(name).release()
            for submitted in submit_ready():
                completed.add(submitted)
        apply_ignores(root, plan, set(results))
        if opts.pull:
            progress.say("dvc pull: every output into the checkout")
            pull_outputs(root, plan, results)
    finally:
        pending = [f for f in futures.values() if not f.done()]
        if pending:
            client.cancel(pending)
            for name, f in futures.items():
                if f in pending:
                    progress.update(name, "cancelled")
            apply_ignores(root, plan, set(results))
        _never_started(unsubmitted, progress)
        progress.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return Summary(results, time.monotonic() - t0)
