"""How far can workers speed up the `pocus` study? Its DAG's critical path against its total work.

The graph is DVC's (dvc.yaml with the `pocus` profile, read through `lusaug.cluster.plan` as
`lusaug cluster repro` reads it); each item's cost is its measured wall time in the committed
run `pocus-cv-run-2` (BENCHMARKS.md "Per fold, the cross-validated POCUS run" and the cost table
of docs/results-pocus.md: benchmarks/pocus_stage_costs.json says which number came from where).
It prints the total work, the critical path (longest chain of stage times), their ratio (the
best speed-up any number of workers can give), and the makespan of Dask-like list scheduling
(an idle worker takes the ready item with the longest chain below it) for N = 1..16 workers.
`--split-train` also shows `train@k` cut into its 40 classifier runs (a DVC matrix over runs).

    python benchmarks/pocus_critical_path.py > benchmarks/pocus_critical_path.txt
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lusaug.cluster.plan import read_plan

ROOT = Path(__file__).resolve().parents[1]
COSTS = Path(__file__).with_name("pocus_stage_costs.json")
MAX_WORKERS = 16


def pocus_graph() -> dict[str, tuple[str, ...]]:
    """item -> upstream items, for dvc.yaml under the `pocus` profile (DVC's own graph)."""
    with tempfile.TemporaryDirectory(prefix="lusaug-pocus-dag-") as tmp:
        root = Path(tmp)
        for name in ("dvc.yaml", "params.yaml"):
            shutil.copy2(ROOT / name, root / name)
        lusaug = Path(sys.executable).with_name("lusaug")
        subprocess.run([str(lusaug), "profile", "pocus", "--params", str(root / "params.yaml")],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root,
                       check=True)  # fmt: skip
        plan = read_plan(root)
        return {i.name: i.upstream for i in plan.items}


def item_cost(name: str, costs: dict) -> float:
    stage = name.split("@")[0]
    per_item = costs["items"].get(name)
    if per_item is None and "@final" in name:  # the final split's item: the folds' mean (the
        # committed run predates it; the final split holds every patient, a fold about 3/4)
        pattern = re.escape(name).replace("final", r"\d+")
        folds = [v for k, v in costs["items"].items() if re.fullmatch(pattern, k)]
        per_item = sum(folds) / len(folds) if folds else None
    return float(per_item if per_item is not None else costs["stages"][stage])


def longest_below(graph: dict[str, tuple[str, ...]], cost: dict[str, float]) -> dict[str, float]:
    """Cost of the longest chain that starts at each item (itself included)."""
    below: dict[str, list[str]] = {n: [] for n in graph}
    for n, ups in graph.items():
        for u in ups:
            below[u].append(n)
    memo: dict[str, float] = {}
    for n in reversed(list(graph)):  # DVC's plan order: every item after its upstream
        memo[n] = cost[n] + max((memo[d] for d in below[n]), default=0.0)
    return memo


def makespan(graph: dict[str, tuple[str, ...]], cost: dict[str, float], workers: int) -> float:
    """List scheduling: an idle worker takes the ready item with the longest chain below it."""
    prio = longest_below(graph, cost)
    waiting = {n: set(ups) for n, ups in graph.items()}
    ready = [(-prio[n], n) for n, ups in waiting.items() if not ups]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, free = 0.0, workers
    while ready or running:
        while free and ready:
            _, n = heapq.heappop(ready)
            heapq.heappush(running, (now + cost[n], n))
            free -= 1
        now, done = heapq.heappop(running)
        free += 1
        for n, ups in waiting.items():
            if done in ups:
                ups.discard(done)
                if not ups:
                    heapq.heappush(ready, (-prio[n], n))
    return now


def split_train(graph: dict, cost: dict, runs: int) -> tuple[dict, dict]:
    """``train@k`` as ``runs`` equal items (evaluate waits for all of them)."""
    g2, c2 = {}, {}
    for n, ups in graph.items():
        parts = [f"{n}#{r}" for r in range(runs)] if n.startswith("train@") else [n]
        for p in parts:
            g2[p], c2[p] = ups, cost[n] / len(parts)
    for n, ups in list(g2.items()):
        g2[n] = tuple(x for u in ups for x in ([f"{u}#{r}" for r in range(runs)]
                                              if u.startswith("train@") else [u]))  # fmt: skip
    return g2, c2


def report(graph: dict, cost: dict, title: str) -> list[str]:
    total = sum(cost.values())
    prio = longest_below(graph, cost)
    critical = max(prio.values())
    chain, n = [], max(prio, key=prio.get)
    below = {m: [d for d, ups in graph.items() if m in ups] for m in graph}
    while True:
        chain.append(n)
        if not below[n]:
            break
        n = max(below[n], key=prio.get)
    spans = {w: makespan(graph, cost, w) for w in range(1, MAX_WORKERS + 1)}
    best = min(spans.values())
    enough = min(w for w, s in spans.items() if s <= best * 1.0001)
    lines = [
        f"## {title}",
        f"items: {len(graph)}; total work: {total:.0f} s ({total / 3600:.2f} h)",
        f"critical path: {critical:.0f} s ({critical / 60:.1f} min): "
        + " -> ".join(f"{m} ({cost[m]:.0f} s)" for m in chain),
        f"best speed-up (total / critical path): {total / critical:.2f}x",
        "workers  makespan_s  speed-up",
    ]
    lines += [f"{w:7d}  {s:10.0f}  {total / s:7.2f}x" for w, s in spans.items()]
    lines.append(
        f"past {enough} workers the makespan stops falling ({best:.0f} s = "
        f"{best / critical:.2f} x the critical path)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split-train", type=int, default=40, help="runs per train@k (0: no split)")
    args = ap.parse_args(argv)
    costs = json.loads(COSTS.read_text())
    graph = pocus_graph()
    cost = {n: item_cost(n, costs) for n in graph}
    lines = report(graph, cost, "pocus as dvc.yaml runs it (train@k = one item of 40 runs)")
    if args.split_train:
        g2, c2 = split_train(graph, cost, args.split_train)
        lines += [""] + report(g2, c2, f"train@k split into {args.split_train} items")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
