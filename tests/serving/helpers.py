"""Run a real uvicorn server on 127.0.0.1 in a thread; craft media files for requests."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import uvicorn

from tests.export.helpers import free_port


class LiveServer:
    """uvicorn in a background thread on a free loopback port (stopped by ``stop``)."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
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
