"""Run a real uvicorn server on 127.0.0.1 in a thread; craft media files for requests."""

from __future__ import annotations

import dataclasses
import io
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import uvicorn
from PIL import Image

from tests.export.helpers import free_port


class LiveServer:
    """uvicorn in a background thread on a free loopback port (stopped by ``stop``)."""

    def __init__(self, app, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn thread died during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def write_video(path: Path, n_frames: int = 24, fps: float = 12.0, size: int = 40) -> Path:
    """A short grey clip (mp4v) whose brightness ramps, so frames differ."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert w.isOpened(), "OpenCV cannot write mp4v here"
    rng = np.random.default_rng(0)
    for i in range(n_frames):
        grey = np.clip(rng.normal(40 + 8 * i, 20, (size, size)), 0, 255).astype(np.uint8)
        w.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    w.release()
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` with a token IDAT (header-first size check)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


class ServerProcess:
    """`lusaug serve` as a real subprocess on 127.0.0.1 (for RSS: a server of its own)."""

    def __init__(self, onnx: Path, work: Path, serve_overrides: dict | None = None) -> None:
        import sys

        import yaml

        from lusaug.core.config import PROJ_ROOT

        params = yaml.safe_load((PROJ_ROOT / "params.yaml").read_text())
        params["serve"].update({"reload_poll_s": 0.0, **(serve_overrides or {})})
        pfile = work / "serve-params.yaml"
        pfile.write_text(yaml.safe_dump(params))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"serve-{self.port}.log"
        cmd = [str(Path(sys.executable).with_name("lusaug")), "serve", "--model", str(onnx)]
        cmd += ["--port", str(self.port), "--params", str(pfile)]
        self._cmd, self._cwd = cmd, work
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> ServerProcess:
        import httpx

        self.proc = subprocess.Popen(
            self._cmd, cwd=self._cwd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb")
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"lusaug serve did not get ready in {timeout} s")

    def rss(self) -> int:
        """Resident set size of the server process (bytes)."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PeakRSS:
    """Samples a process's RSS in a thread while the ``with`` block runs; ``peak`` in bytes."""

    def __init__(self, sample, every_s: float = 0.01) -> None:
        self.sample, self.every_s = sample, every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(self.every_s)

    def __enter__(self) -> Self:
        self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def constant_png(width: int, height: int, value: int = 77) -> bytes:
    """A constant-colour greyscale PNG: a few kB on the wire, width x height decoded."""
    buf = io.BytesIO()
    Image.new("L", (width, height), value).save(buf, format="PNG")
    return buf.getvalue()


def static_video(path: Path, width: int, height: int, n_frames: int, fps: float) -> Path:
    """A video of one constant frame (mp4v): tiny on the wire, huge once decoded."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert w.isOpened(), "OpenCV cannot write mp4v here"
    frame = np.full((height, width, 3), 120, np.uint8)
    for _ in range(n_frames):
        w.write(frame)
    w.release()
    return path


def write_mpeg(path: Path, n_frames: int = 25, size: int = 48) -> Path:
    """An MPEG-1 program stream (.mpeg), as in the POCUS folder; MPEG-1 needs 25 fps."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"PIM1"), 25.0, (size, size))
    assert w.isOpened(), "OpenCV cannot write MPEG-1 here"
    rng = np.random.default_rng(1)
    for i in range(n_frames):
        grey = np.clip(rng.normal(60 + 4 * i, 20, (size, size)), 0, 255).astype(np.uint8)
        w.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    w.release()
    return path


def write_gif(path: Path, n_frames: int = 6, size: int = 40, ms: int = 100) -> Path:
    """An animated GIF (the frames stage reads GIFs as videos)."""
    rng = np.random.default_rng(2)
    frames = [
        Image.fromarray(rng.integers(40 + 20 * i, 120 + 20 * i, (size, size), dtype=np.uint8))
        for i in range(n_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return path


def multipart_body(parts: list[tuple[str, bytes, str]], boundary: str = "lusaugtest") -> bytes:
    """A multipart/form-data body of ``files`` parts (name, data, content type)."""
    out = b""
    for name, data, ctype in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def serve_cfg(params, **over):
    """``params.serve`` for tests: no registry polling, plus ``over``."""
    return dataclasses.replace(params.serve, **{"reload_poll_s": 0, **over})


def video_sampling(params):
    """The sampling `lusaug serve` uses: the frames stage's rate, serve.max_video_frames."""
    from lusaug.serving.preprocess import VideoSampling

    return VideoSampling(
        params.frames.sample_fps, params.frames.every_n, params.serve.max_video_frames
    )


def start_server(onnx, params, **create_kwargs) -> LiveServer:
    """A live uvicorn on 127.0.0.1 serving ``onnx`` as `lusaug serve` would build it."""
    from lusaug.serving.app import create_app

    cfg = create_kwargs.pop("cfg", serve_cfg(params))
    create_kwargs.setdefault("min_side", params.frames.min_side)
    return LiveServer(create_app(str(onnx), cfg, video_sampling(params), **create_kwargs)).start()
