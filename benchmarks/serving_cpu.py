"""CPU time per /predict request, this tree vs another, in process (no sockets, no client).

Usage:
    .venv/bin/python benchmarks/serving_cpu.py --baseline /tmp/lusaug-main [--requests 1000]
        [--rounds 8] [--repeats 3]

Each tree's app (`create_app` on the same exported model, the default `serve:` params, no
registry polling) is driven by a minimal ASGI loop in a subprocess of its own, one request at a
time (the lone-request path: decode and inference inline), one 64x64 PNG per request, multipart
and raw body. The figure is the process's CPU time per request (`time.process_time`), the
minimum over rounds, so load from other processes on the shared cores barely moves it, unlike
the requests/s of benchmarks/serving.py. Trees alternate, `--repeats` times.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "lusaugcpu"


def worker(onnx: str, mode: str, requests: int, rounds: int) -> None:
    """Run in the tree under test (PYTHONPATH): print min CPU microseconds per request."""
    import io

    import numpy as np
    from PIL import Image

    from lusaug.core.config import load_params
    from lusaug.serving.app import create_app
    from lusaug.serving.preprocess import VideoSampling

    params = load_params(ROOT / "params.yaml")
    cfg = dataclasses.replace(params.serve, reload_poll_s=0)
    app = create_app(onnx, cfg, VideoSampling())
    buf = io.BytesIO()
    grey = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(grey).save(buf, format="PNG")
    png = buf.getvalue()
    if mode == "raw":
        body, ctype = png, b"image/png"
    else:
        body = (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="frame.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + png
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        ctype = f"multipart/form-data; boundary={BOUNDARY}".encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", ctype),
        (b"content-length", b"%d" % len(body)),
    ]

    async def one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
            "root_path": "", "state": {},
        }  # fmt: skip
        sent = False
        status = []

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # a disconnect never comes

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        assert status == [200], status

    async def run() -> list[float]:
        async with app.router.lifespan_context(app):
            for _ in range(requests // 2):  # warm-up
                await one()
            out = []
            for _ in range(rounds):
                t0 = time.process_time()
                for _ in range(requests):
                    await one()
                out.append(1e6 * (time.process_time() - t0) / requests)
            return out

    print(json.dumps(asyncio.run(run())))


def build_model(work: Path) -> Path:
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
        extra={"architecture": arch},
    )
    torch.manual_seed(0)
    return export_onnx(build_classifier(meta).eval(), meta, work / "c.onnx", params.export)


def measure(src: Path, onnx: Path, mode: str, requests: int, rounds: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(onnx), mode, str(requests), str(rounds)],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return min(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        onnx, mode, requests, rounds = sys.argv[2:6]
        return worker(onnx, mode, int(requests), int(rounds))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the other tree (has src/)")
    ap.add_argument("--requests", type=int, default=1000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per run (minimum taken)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per tree")
    args = ap.parse_args()
    trees = {"this tree": ROOT / "src", f"baseline {args.baseline.name}": args.baseline / "src"}
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx = build_model(Path(tmp))
        for _ in range(args.repeats):
            for mode in ("multipart", "raw"):
                for label, src in trees.items():
                    us = measure(src, onnx, mode, args.requests, args.rounds)
                    best[label, mode] = min(best.get((label, mode), us), us)
    cmd = "python benchmarks/serving_cpu.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{cmd}`", "", f"Machine: {describe()}", ""]
    lines += ["| tree | multipart CPU us/request | raw body CPU us/request |", "|---|---|---|"]
    for label in trees:
        lines.append(f"| {label} | {best[label, 'multipart']:.0f} | {best[label, 'raw']:.0f} |")
    base = f"baseline {args.baseline.name}"
    ratio = {m: best["this tree", m] / best[base, m] - 1 for m in ("multipart", "raw")}
    summary = (
        f"This tree vs baseline: multipart {100 * ratio['multipart']:+.1f} %, raw "
        f"{100 * ratio['raw']:+.1f} % CPU per request."
    )
    lines += ["", summary]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
