"""Server robustness at full scale: issue 16's hostile mix, a 10,000-request soak, a long fuzz.

Usage:
    .venv/bin/python benchmarks/serving_robustness.py [--soak 10000] [--clients 8]
        [--fuzz-examples 300] [--out FILE.md]

Starts `lusaug serve` (a subprocess, default params, the default architecture at
base.image_size with random weights) on 127.0.0.1 and measures:

1. Hostile mix: 32 requests at once, cycling through 64 constant-colour 4096x4096 PNGs in one
   multipart request, 64 4096x1 strips, a static 300-frame 30 fps 4K clip (under the body cap)
   and 8 such PNGs (within the per-request budget, so they are decoded: the in-flight budget's
   case), while one client keeps sending good one-frame requests; peak server RSS (sampled
   every 10 ms), every status and reason.
2. Soak: --soak requests from --clients keep-alive clients (one 64x64 PNG each): errors, p50/p99,
   requests/s, RSS before/after (after a warm-up of 500 requests).
3. Fuzz: schemathesis on the live /openapi.json (--fuzz-examples per operation, check
   not_a_server_error) plus the malformed-request corpus of tests/serving/test_fuzz.py.

Prints Markdown (command and machine first); --out also writes it. The load generators are the
bounded tests' own (tests/serving/load.py), at full scale here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.serving.* (load generators shared with the tests)

from tests.serving.helpers import PeakRSS, ServerProcess
from tests.serving.load import (
    ALLOWED_STATUSES,
    HostileMix,
    good_request,
    hostile_requests,
    run_hostile_mix,
    send_once,
    soak,
)

GIB = 2**30
SOAK_WARMUP = 500


def build_model(work: Path) -> Path:
    """The default architecture at base.image_size, random weights, exported as serving uses it."""
    import torch

    from lusaug.core.config import load_params
    from lusaug.export.onnx_export import export_onnx
    from lusaug.models.classifier import ClassifierMeta, build_classifier

    params = load_params(ROOT / "params.yaml")
    arch = next(iter(params.train.architectures))
    a = params.train.architectures[arch]
    meta = ClassifierMeta(
        model=a.model,
        kwargs={k: v for k, v in a.kwargs.items() if v is not None},
        classes=list(params.base.classes),
        image_size=params.base.image_size,
        extra={"architecture": arch, "strategy": "benchmark"},
    )
    torch.manual_seed(0)
    return export_onnx(build_classifier(meta).eval(), meta, work / "c.onnx", params.export)


def hostile_section(server: ServerProcess, work: Path) -> list[str]:
    mix = HostileMix()
    print("hostile mix...", file=sys.stderr)
    requests = hostile_requests(mix, work)
    sizes = {k: len(v) / 2**20 for k, v in requests.items()}
    idle = server.rss()
    with PeakRSS(server.rss) as rss:
        res = asyncio.run(run_hostile_mix(server.port, requests, mix))
    by_kind = collections.defaultdict(collections.Counter)
    reasons = {}
    for kind, status, detail in res.hostile:
        by_kind[kind][status] += 1
        reasons.setdefault(kind, detail)
    good = collections.Counter(res.good)
    ok = all(s in ALLOWED_STATUSES[k] | {503} for k, s, _ in res.hostile) and set(good) == {200}
    lines = [
        f"### Hostile mix: {mix.concurrency} requests at once",
        "",
        "| request | body MB | statuses | reason (first) |",
        "|---|---|---|---|",
    ]
    for kind, counts in by_kind.items():
        status = ", ".join(f"{n}x {s}" for s, n in sorted(counts.items()))
        lines.append(f"| {kind} | {sizes[kind]:.2f} | {status} | {reasons[kind][:110]} |")
    lines += [
        "",
        (
            f"Good one-frame requests sent meanwhile: {sum(good.values())} "
            f"({', '.join(f'{n}x {s}' for s, n in good.items())}). Peak server RSS "
            f"**{rss.peak / GIB:.2f} GiB** (idle {idle / GIB:.2f} GiB; target <= 1.5 GiB); "
            f"{res.seconds:.1f} s. Every hostile request 4xx/503 with a reason (heavy: 200 or "
            f"503), good ones 200: "
            f"**{'yes' if ok else 'NO'}**."
        ),
        "",
    ]
    return lines


def soak_section(server: ServerProcess, n: int, clients: int) -> list[str]:
    print(f"soak {n} x {clients}...", file=sys.stderr)
    request = good_request()
    asyncio.run(soak(server.port, request, SOAK_WARMUP, clients))
    before = server.rss()
    res = asyncio.run(soak(server.port, request, n, clients))
    after = server.rss()
    growth = 100 * (after / before - 1)
    return [
        f"### Soak: {n} requests from {clients} keep-alive clients (after {SOAK_WARMUP} warm-up)",
        "",
        "| errors | requests/s | p50 ms | p99 ms | RSS before MiB | RSS after MiB | growth |",
        "|---|---|---|---|---|---|---|",
        (
            f"| {res.errors} | {n / res.seconds:.0f} | {res.percentile(50):.1f} | "
            f"{res.percentile(99):.1f} | {before / 2**20:.0f} | {after / 2**20:.0f} | {growth:+.1f} % |"
        ),
        "",
        f"Targets: 0 errors, RSS growth <= 5 %: **{'met' if not res.errors and growth <= 5 else 'NOT met'}**.",
        "",
    ]


def fuzz_section(server: ServerProcess, examples: int, work: Path) -> list[str]:
    print(f"fuzz ({examples} examples per operation)...", file=sys.stderr)
    from tests.serving.test_fuzz import MALFORMED, SCHEMATHESIS

    t0 = time.perf_counter()
    out = subprocess.run(
        [SCHEMATHESIS, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error"]
        + ["--max-examples", str(examples), "--seed", "16", "--no-color"]
        + ["--request-timeout", "60"],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,  # schemathesis keeps a .schemathesis/ cache in its working directory
    )
    secs = time.perf_counter() - t0
    summary = [ln.strip() for ln in out.stdout.splitlines() if "generated" in ln]
    statuses = collections.Counter()
    for body in MALFORMED.values():
        try:
            status, _ = asyncio.run(send_once(server.port, body, 60))
        except (asyncio.IncompleteReadError, ConnectionError):
            status = 0
        statuses[status] += 1
    five = sum(n for s, n in statuses.items() if s >= 500)
    return [
        "### Fuzz",
        "",
        (
            f"schemathesis ({examples} examples per operation, `not_a_server_error`): "
            f"{summary[-1] if summary else 'no summary'}; exit code {out.returncode} "
            f"({'no 5xx' if out.returncode == 0 else 'FAILURES'}), {secs:.0f} s."
        ),
        "",
        (
            f"Malformed-request corpus ({len(MALFORMED)} cases): statuses "
            f"{dict(sorted(statuses.items()))} (0 = connection dropped by the HTTP parser); "
            f"5xx: **{five}**."
        ),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--soak", type=int, default=10_000, help="soak requests")
    ap.add_argument("--clients", type=int, default=8, help="soak clients")
    ap.add_argument("--fuzz-examples", type=int, default=300, help="schemathesis examples/op")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = ap.parse_args()
    cmd = "python benchmarks/serving_robustness.py " + " ".join(sys.argv[1:])
    lines = [
        "## Serving robustness",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Machine: {describe()}",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="lusaug-robust-") as tmp:
        work = Path(tmp)
        server = ServerProcess(build_model(work), work).start()
        try:
            lines += hostile_section(server, work)
            lines += soak_section(server, args.soak, args.clients)
            lines += fuzz_section(server, args.fuzz_examples, work)
        finally:
            server.stop()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
