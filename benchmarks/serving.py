"""Serving benchmarks: torch eager vs ORT fp32 vs int8; `lusaug serve` vs `mlflow models serve`.

Usage:
    .venv/bin/python benchmarks/serving.py [--arch resnet] [--requests 300] [--out FILE.md]

1. Model latency/throughput: batch-1 latency (p50/p99 over --iters calls) and batch-64
   throughput (images/s) for torch eager, ORT fp32 and ORT int8 (static QDQ for CNNs, dynamic for
   ViTs, as the export stage chooses), on the default profile's architecture at base.image_size
   (random weights: speed does not depend on them). Threads: 2 for torch and ORT.
2. Server: `lusaug serve` (uvicorn subprocess) with and without micro-batching, and
   `mlflow models serve` on the same ONNX pyfunc, at concurrency 1, 8 and 32: requests/s and p99
   latency, one PNG frame per request (mlflow: the same PNG as base64 JSON).

Prints Markdown (the command and the machine first); --out also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def machine() -> str:
    import onnxruntime
    import torch

    return (
        describe(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
        + " (the machine is shared: expect +-30 %)"
    )


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# ------------------------------------------------------------------------------- model speed


def build(arch: str, work: Path):
    import torch

    from lusaug.core.config import load_params
    from lusaug.export.model_input import normalise
    from lusaug.export.onnx_export import export_onnx, quantize_int8, resolve_int8_mode
    from lusaug.models.classifier import ClassifierMeta, build_classifier

    params = load_params(ROOT / "params.yaml")
    a = params.train.architectures[arch]
    meta = ClassifierMeta(
        model=a.model,
        kwargs={k: v for k, v in a.kwargs.items() if v is not None},
        classes=list(params.base.classes),
        image_size=params.base.image_size,
        extra={"architecture": arch, "strategy": "benchmark"},
    )
    torch.manual_seed(0)
    model = build_classifier(meta).eval()
    fp32 = export_onnx(model, meta, work / "classifier.onnx", params.export)
    rng = np.random.default_rng(0)
    size = params.base.image_size
    calib = normalise(rng.integers(0, 255, (64, size, size), dtype=np.uint8), meta.mean, meta.std)
    mode = resolve_int8_mode("auto", fp32)
    int8 = work / "classifier.int8.onnx"
    quantize_int8(fp32, int8, mode, calib, 8)
    return params, model, meta, fp32, int8, mode


def model_speed(
    model, fp32: Path, int8: Path, size: int, iters: int, threads: int = 2
) -> list[tuple[str, float, float, float]]:
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    x1 = np.random.default_rng(1).standard_normal((1, 1, size, size)).astype(np.float32)
    x64 = np.random.default_rng(2).standard_normal((64, 1, size, size)).astype(np.float32)

    def torch_run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x))

    def ort_runner(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})

    rows = []
    for label, fn in [
        ("PyTorch eager fp32", torch_run),
        ("ORT fp32", ort_runner(fp32)),
        ("ORT int8", ort_runner(int8)),
    ]:
        for _ in range(10):
            fn(x1)
        lat = []
        for _ in range(iters):
            t = time.perf_counter()
            fn(x1)
            lat.append(1000 * (time.perf_counter() - t))
        fn(x64)
        n64 = max(iters // 10, 5)
        t = time.perf_counter()
        for _ in range(n64):
            fn(x64)
        thr = 64 * n64 / (time.perf_counter() - t)
        rows.append((label, pct(lat, 50), pct(lat, 99), thr))
    return rows


# ---------------------------------------------------------------------------------- servers


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}; see the logs in {url}'s work dir"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib_suppress():
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib_suppress():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def contextlib_suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    httpx costs milliseconds of CPU per request, on the same two cores as the server; this
    client sends prebuilt request bytes, so the table measures the servers, not the client.
    """

    def __init__(self, port: int, request: bytes) -> None:
        self.port, self.request = port, request
        self.reader = self.writer = None

    async def send(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def http_request(path: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def multipart(png: bytes) -> tuple[str, bytes]:
    b = "lusaugbench"
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="frame.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{b}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={b}", body


async def load(port: int, request: bytes, n: int, concurrency: int, raw: bool = False):
    """n requests from `concurrency` keep-alive clients: (requests/s, p99 ms, errors)."""
    lat: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def client() -> None:
        nonlocal errors
        c = RawClient(port, request)
        try:
            for _ in counter:
                t = time.perf_counter()
                status = await c.send()
                lat.append(1000 * (time.perf_counter() - t))
                errors += status != 200
        finally:
            c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    rps = n / (time.perf_counter() - t0)
    return (rps, pct(lat, 99), errors, lat) if raw else (rps, pct(lat, 99), errors)


def lusaug_server(
    onnx: Path, params_dict: dict, window_ms: float, work: Path, src: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`lusaug serve` on a free port; ``src``: run the lusaug package of another tree."""
    p = dict(params_dict)
    p["serve"] = {**p["serve"], "batch_window_ms": window_ms, "reload_poll_s": 0.0}
    pfile = work / f"params-{window_ms}.yaml"
    pfile.write_text(yaml.safe_dump(p))
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "lusaug"),
            "serve",
            "--model",
            str(onnx),
            "--port",
            str(port),
            "--params",
            str(pfile),
        ],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(src)} if src else None,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(work / f"serve-{port}.log").open("wb"),
    )
    return proc, f"http://127.0.0.1:{port}"


def mlflow_server(onnx: Path, work: Path) -> tuple[subprocess.Popen, str]:
    import mlflow

    from lusaug.export.mlflow_model import log_onnx_pyfunc

    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    with mlflow.start_run():
        info = log_onnx_pyfunc(onnx)
    mlflow.register_model(info.model_uri, "bench-classifier")
    mlflow.MlflowClient().set_registered_model_alias("bench-classifier", "production", "1")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/bench-classifier@production",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=work,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(work / "mlflow-serve.log").open("wb"),
    )
    return proc, f"http://127.0.0.1:{port}"


def ceiling_server(work: Path) -> tuple[subprocess.Popen, str]:
    """uvicorn serving benchmarks/ceiling_app.py: no decoding, no model, a constant answer."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "ceiling_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).parent,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(work / "ceiling.log").open("wb"),
    )
    return proc, f"http://127.0.0.1:{port}"


def server_table(
    onnx: Path,
    params_dict: dict,
    png: bytes,
    n: int,
    work: Path,
    rounds: int,
    baseline: Path | None = None,
    only_lusaug: bool = False,
) -> list[tuple]:
    """All three servers run at once (idle ones cost nothing); each concurrency level is measured
    in ``rounds`` interleaved rounds, so load from other processes hits every server alike."""
    import json

    ctype, body = multipart(png)
    lusaug_req = http_request("/predict", ctype, body)
    b64 = base64.b64encode(png).decode()
    mlflow_req = http_request(
        "/invocations", "application/json", json.dumps({"inputs": [b64]}).encode()
    )
    raw_req = http_request("/predict", "image/png", png)
    window = params_dict["serve"]["batch_window_ms"]
    starts = {
        "batch": (lambda: lusaug_server(onnx, params_dict, window, work), "/health"),
        "nobatch": (lambda: lusaug_server(onnx, params_dict, 0.0, work), "/health"),
        "mlflow": (lambda: mlflow_server(onnx, work), "/ping"),
        "ceiling": (lambda: ceiling_server(work), "/health"),
    }
    configs = [
        (f"lusaug serve, micro-batching ({window:g} ms), multipart", "batch", lusaug_req),
        (f"lusaug serve, micro-batching ({window:g} ms), raw image/png body", "batch", raw_req),
        ("lusaug serve, no micro-batching, multipart", "nobatch", lusaug_req),
        ("mlflow models serve (pyfunc, same ONNX), base64 JSON", "mlflow", mlflow_req),
        ("ceiling: FastAPI + uvicorn, empty endpoint, raw image/png body", "ceiling", raw_req),
    ]
    if baseline is not None:  # the same server from another tree, in the same rounds
        src = baseline / "src"
        starts["base"] = (lambda: lusaug_server(onnx, params_dict, window, work, src), "/health")
        configs[2:2] = [
            (f"baseline {baseline.name}: micro-batching, multipart", "base", lusaug_req),
            (f"baseline {baseline.name}: micro-batching, raw image/png body", "base", raw_req),
        ]
    if only_lusaug:  # before/after comparisons: leave out mlflow and the ceiling
        starts = {k: v for k, v in starts.items() if k in ("batch", "base")}
        configs = [c for c in configs if c[1] in starts]
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for key, (start, health) in starts.items():
            procs[key] = start()
        for key, (start, health) in starts.items():
            wait_http(procs[key][1] + health, procs[key][0])
        servers = [(label, *procs[key], req) for label, key, req in configs]
        for label, proc, url, req in servers:
            asyncio.run(load(int(url.rsplit(":", 1)[1]), req, 40, 4))  # warm-up
        rows = []
        for conc in (1, 8, 32):
            stats = {label: ([], 0, 0.0) for label, *_ in servers}
            for _ in range(rounds):
                for label, proc, url, req in servers:
                    lat, errors, secs = stats[label]
                    t0 = time.perf_counter()
                    _, _, err, lat_r = asyncio.run(
                        load(int(url.rsplit(":", 1)[1]), req, n // rounds, conc, True)
                    )
                    stats[label] = (lat + lat_r, errors + err, secs + time.perf_counter() - t0)
            for label, (lat, errors, secs) in stats.items():
                rows.append((label, conc, len(lat) / secs, pct(lat, 99), errors))
                print(
                    f"  {label} c={conc}: {len(lat) / secs:.0f} req/s, p99 {pct(lat, 99):.1f} ms, "
                    f"errors {errors}",
                    file=sys.stderr,
                )
    finally:
        for proc, _ in procs.values():
            stop(proc)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet", help="a key of train.architectures")
    ap.add_argument("--iters", type=int, default=300, help="batch-1 calls per engine")
    ap.add_argument(
        "--requests", type=int, default=300, help="requests per server and concurrency"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per concurrency")
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT threads (model table)")
    ap.add_argument("--no-servers", action="store_true", help="only the model table")
    ap.add_argument(
        "--served",
        choices=["fp32", "int8"],
        default="fp32",
        help="the ONNX model both servers run (the export stage writes both)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another lusaug tree (e.g. `git archive` of main): its server joins the rounds",
    )
    ap.add_argument(
        "--only-lusaug",
        action="store_true",
        help="servers: only lusaug with micro-batching (and --baseline); no mlflow, no ceiling",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cmd = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    lines = [
        "## Serving benchmarks",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Machine: {machine()}",
        "",
    ]
    work = Path(tempfile.mkdtemp(prefix="lusaug-bench-"))
    try:
        _, model, meta, fp32, int8, mode = build(args.arch, work)
        size = meta.image_size
        print(f"model speed ({meta.model}, {size} px)...", file=sys.stderr)
        rows = model_speed(model, fp32, int8, size, args.iters, args.threads)
        eager_p50 = rows[0][1]
        lines += [
            (
                f"### Model: `{meta.model}` {meta.kwargs} at {size} px, int8 = {mode}, "
                f"{args.threads} thread(s)"
            ),
            "",
            (
                "| engine | batch-1 p50 ms | batch-1 p99 ms | speed-up vs eager (p50) "
                "| batch-64 img/s |"
            ),
            "|---|---|---|---|---|",
        ]
        for label, p50, p99, thr in rows:
            lines.append(
                f"| {label} | {p50:.2f} | {p99:.2f} | {eager_p50 / p50:.1f}x | {thr:.0f} |"
            )
        from lusaug.export.model_input import encode_png_base64

        png = base64.b64decode(
            encode_png_base64(
                np.random.default_rng(3).integers(0, 255, (size, size), dtype=np.uint8)
            )
        )
        with (ROOT / "params.yaml").open() as fh:
            params_dict = yaml.safe_load(fh)
        if args.no_servers:
            return finish(lines, args.out)
        print("servers...", file=sys.stderr)
        served = fp32 if args.served == "fp32" else int8
        srows = server_table(
            served,
            params_dict,
            png,
            args.requests,
            work,
            args.rounds,
            args.baseline,
            args.only_lusaug,
        )
        mlflow_rps = {c: r for lab, c, r, _, _ in srows if lab.startswith("mlflow")}
        lines += [
            "",
            (
                f"### HTTP servers ({args.served} model in both): {args.requests} requests per "
                f"cell, one {size}x{size} PNG each (client on the same 2 cores)"
            ),
            "",
            "| server | concurrency | requests/s | p99 ms | errors | vs mlflow models serve |",
            "|---|---|---|---|---|---|",
        ]
        for label, conc, rps, p99, errors in srows:
            ratio = f"{rps / mlflow_rps[conc]:.1f}x" if conc in mlflow_rps else "-"
            lines.append(f"| {label} | {conc} | {rps:.0f} | {p99:.1f} | {errors} | {ratio} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish(lines, args.out)


def finish(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


if __name__ == "__main__":
    main()
