"""No request makes the server answer 5xx: schemathesis on the live OpenAPI schema, and a corpus
of malformed multipart bodies and headers sent byte for byte over a socket."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.export.helpers import frame, png_bytes
from tests.serving.load import send_once

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
BOUNDED_EXAMPLES = 25  # per operation; benchmarks/serving_robustness.py runs a longer fuzz


@pytest.mark.skipif(not Path(SCHEMATHESIS).exists(), reason="schemathesis is not installed")
def test_schemathesis_finds_no_server_error(server, tmp_path):
    out = subprocess.run(
        [SCHEMATHESIS, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error"]
        + ["--max-examples", str(BOUNDED_EXAMPLES), "--seed", "16", "--no-color"]
        + ["--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its working directory
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "/predict" in httpx.get(f"{server.url}/openapi.json").text
    assert httpx.get(f"{server.url}/health/ready").status_code == 200


PNG = png_bytes(frame(0, np.random.default_rng(0)))


def _post(headers: str, body: bytes) -> bytes:
    return f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


def _mp(body: bytes, boundary: str = "b", extra: str = "") -> bytes:
    ctype = f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    return _post(f"{ctype}Content-Length: {len(body)}\r\nConnection: close\r\n{extra}", body)


def _part(headers: str, data: bytes, boundary: str = "b") -> bytes:
    return f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"


FILE = 'Content-Disposition: form-data; name="files"; filename="a.png"\r\nContent-Type: image/png'
END = b"--b--\r\n"
MALFORMED: dict[str, bytes] = {
    "no boundary parameter": _post(
        f"Content-Type: multipart/form-data\r\nContent-Length: {len(PNG)}\r\n", PNG
    ),
    "empty boundary": _mp(_part(FILE, PNG) + END, boundary='""'),
    "boundary mismatch": _mp(_part(FILE, PNG, "other") + b"--other--\r\n"),
    "no closing boundary": _mp(_part(FILE, PNG)),
    "truncated part": _mp(_part(FILE, PNG)[:40]),
    "part without headers": _mp(b"--b\r\n\r\n" + PNG + b"\r\n" + END),
    "no Content-Disposition": _mp(_part("Content-Type: image/png", PNG) + END),
    "disposition without name": _mp(_part("Content-Disposition: form-data", PNG) + END),
    "unterminated quote": _mp(_part('Content-Disposition: form-data; name="files', PNG) + END),
    "path traversal name": _mp(_part(FILE.replace("a.png", "../../../etc/passwd.png"), PNG) + END),
    "NUL in filename": _mp(_part(FILE.replace("a.png", "a\x00.png"), PNG) + END),
    "10k-char filename": _mp(_part(FILE.replace("a.png", "a" * 10_000 + ".png"), PNG) + END),
    "non-UTF-8 part header": _mp(
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="\xff\xfe.png"\r\n\r\n'
        + PNG
        + b"\r\n"
        + END
    ),
    "2 MB non-file field": _mp(
        _part('Content-Disposition: form-data; name="note"', b"x" * (2 << 20)) + END
    ),
    "65 file parts": _mp(b"".join(_part(FILE, PNG) for _ in range(65)) + END),
    "png named .mp4": _mp(_part(FILE.replace("a.png", "a.mp4"), PNG) + END),
    "garbage named .mpeg": _mp(_part(FILE.replace("a.png", "a.mpeg"), b"\x00\x01" * 500) + END),
    "garbage named .gif": _mp(
        _part(FILE.replace("a.png", "a.gif"), b"GIF89a" + b"\x00" * 50) + END
    ),
    "video with trailing junk": _mp(_part(FILE.replace("a.png", "a.mp4"), b"ftyp" * 10) + END),
    "Content-Length too small": _post(
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10\r\n"
        "Connection: close\r\n",
        _part(FILE, PNG) + END,
    ),
    "Content-Length not a number": _post(
        "Content-Type: image/png\r\nContent-Length: abc\r\nConnection: close\r\n", PNG
    ),
    "negative Content-Length": _post(
        "Content-Type: image/png\r\nContent-Length: -5\r\nConnection: close\r\n", PNG
    ),
    "two Content-Length headers": _post(
        f"Content-Type: image/png\r\nContent-Length: {len(PNG)}\r\nContent-Length: 3\r\n"
        "Connection: close\r\n",
        PNG,
    ),
    "bad chunk size": _post(
        "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
    ),
    "chunked raw png": _post(
        "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
        f"{len(PNG):x}\r\n".encode() + PNG + b"\r\n0\r\n\r\n",
    ),
    "content type image/ (no subtype)": _post(
        f"Content-Type: image/\r\nContent-Length: {len(PNG)}\r\nConnection: close\r\n", PNG
    ),
    "raw video/mp4, no bytes": _post(
        "Content-Type: video/mp4\r\nContent-Length: 0\r\nConnection: close\r\n", b""
    ),
    "raw garbage named ../x.mp4": _post(
        "Content-Type: video/mp4\r\nContent-Length: 100\r\nConnection: close\r\n", b"\x00" * 100
    ).replace(b"POST /predict ", b"POST /predict?filename=../x.mp4 "),
    "json body": _post(
        "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n", b"{}"
    ),
    "header line of 64 kB": _mp(_part(FILE, PNG) + END, extra=f"X-Pad: {'p' * 65536}\r\n"),
    "charset in content type": _mp(_part(FILE, PNG) + END, boundary="b; charset=utf-16"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_no_5xx(server, case):
    try:
        status, body = asyncio.run(send_once(server.port, MALFORMED[case], timeout=30))
    except (asyncio.IncompleteReadError, ConnectionError):
        status, body = 0, b""  # the HTTP parser dropped the connection: no 5xx either
    assert status == 0 or 200 <= status < 500, (case, status, body[:300])
    if status >= 400 and body.startswith(b"{"):
        assert b'"detail"' in body, (case, body[:300])
    assert httpx.get(f"{server.url}/health").status_code == 200
