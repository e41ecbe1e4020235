"""Load generators shared by the bounded tests and ``benchmarks/serving_robustness.py``.

A raw asyncio HTTP/1.1 client (httpx costs milliseconds of CPU per request, on the same two
cores as the server), the hostile mix of issue 16 at any scale, and a soak of N requests from K
keep-alive clients. Everything runs against a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.export.helpers import frame, png_bytes
from tests.serving.helpers import constant_png, multipart_body, static_video

BOUNDARY = "lusaugload"


def http_request(path: str, content_type: str, body: bytes, close: bool = False) -> bytes:
    """Prebuilt request bytes (POST with a body)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def multipart_request(parts: list[tuple[str, bytes, str]], close: bool = False) -> bytes:
    """A /predict request of multipart ``files`` parts."""
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    return http_request("/predict", ctype, multipart_body(parts, BOUNDARY), close)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length (or up to EOF)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await (reader.readexactly(length) if length is not None else reader.read())
    return status, body


async def send_once(port: int, request: bytes, timeout: float = 120) -> tuple[int, bytes]:
    """One request on its own connection; the server may answer before the body is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class KeepAliveClient:
    """Sends one prebuilt request again and again on one connection."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port, self.request = port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        await self.writer.drain()
        status, _ = await read_response(self.reader)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def good_request() -> bytes:
    """One model-size PNG frame, multipart, keep-alive (what a well-behaved client sends)."""
    blob = png_bytes(frame(1, np.random.default_rng(0), size=64))
    return multipart_request([("frame.png", blob, "image/png")])


@dataclass(frozen=True)
class HostileMix:
    """Issue 16's hostile mix; the defaults are its full scale."""

    concurrency: int = 32  # hostile requests in flight at once
    rounds: int = 1  # waves of `concurrency` requests
    bomb_images: int = 64  # constant-colour PNGs per bomb request
    bomb_side: int = 4096
    strips: int = 64  # 4096 x 1 strips per strip request
    # Within the per-request pixel budget but heavy (8 x 4096^2 decoded): what the in-flight
    # budget is for. Answered 200, or 503 when too many decode at once.
    heavy_images: int = 8
    video_size: tuple[int, int] = (3840, 2160)  # a static 4K clip
    video_frames: int = 300
    video_fps: float = 30.0


def hostile_requests(mix: HostileMix, work: Path) -> dict[str, bytes]:
    """Prebuilt hostile requests by kind (each on its own connection)."""
    bomb = constant_png(mix.bomb_side, mix.bomb_side)
    strip = constant_png(mix.bomb_side, 1)
    video = static_video(work / "static4k.mp4", *mix.video_size, mix.video_frames, mix.video_fps)
    return {
        "bomb": multipart_request(
            [(f"bomb{i}.png", bomb, "image/png") for i in range(mix.bomb_images)], close=True
        ),
        "strips": multipart_request(
            [(f"strip{i}.png", strip, "image/png") for i in range(mix.strips)], close=True
        ),
        "video": multipart_request([("static4k.mp4", video.read_bytes(), "video/mp4")], True),
        "heavy": multipart_request(
            [(f"big{i}.png", bomb, "image/png") for i in range(mix.heavy_images)], close=True
        ),
    }


# What each kind of the mix may be answered: refused with a reason, or (heavy, within the
# per-request budget) served or turned away while the in-flight budget is full.
ALLOWED_STATUSES = {"bomb": {413}, "strips": {422}, "video": {413}, "heavy": {200, 503}}


@dataclass
class MixResult:
    hostile: list[tuple[str, int, str]] = field(default_factory=list)  # kind, status, detail
    good: list[int] = field(default_factory=list)
    seconds: float = 0.0


async def run_hostile_mix(port: int, requests: dict[str, bytes], mix: HostileMix) -> MixResult:
    """Waves of hostile requests at once, while one client keeps sending good requests."""
    result = MixResult()
    kinds = list(requests)
    done = asyncio.Event()

    async def hostile(kind: str) -> None:
        status, body = await send_once(port, requests[kind])
        try:
            detail = json.loads(body)["detail"]
        except (ValueError, KeyError, TypeError):
            detail = ""
        result.hostile.append((kind, status, detail))

    async def good() -> None:
        client = KeepAliveClient(port, good_request())
        try:
            while not done.is_set():
                result.good.append(await client.send())
        finally:
            client.close()

    t0 = time.perf_counter()
    good_task = asyncio.create_task(good())
    for _ in range(mix.rounds):
        await asyncio.gather(*(hostile(kinds[i % len(kinds)]) for i in range(mix.concurrency)))
    done.set()
    await good_task
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class SoakResult:
    statuses: list[int]
    latencies_ms: list[float]
    seconds: float

    @property
    def errors(self) -> int:
        return sum(s != 200 for s in self.statuses)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


async def soak(port: int, request: bytes, n: int, clients: int) -> SoakResult:
    """``n`` requests from ``clients`` keep-alive clients; every status and latency."""
    statuses: list[int] = []
    latencies: list[float] = []
    counter = iter(range(n))

    async def client() -> None:
        c = KeepAliveClient(port, request)
        try:
            for _ in counter:
                t = time.perf_counter()
                statuses.append(await c.send())
                latencies.append(1000 * (time.perf_counter() - t))
        finally:
            c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return SoakResult(statuses, latencies, time.perf_counter() - t0)
