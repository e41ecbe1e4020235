"""The files of a /predict request: multipart ``files`` parts or one raw body, spooled.

Bodies are never held as one ``bytes`` object: multipart parts live in Starlette's spooled
files and a raw body is streamed into one (memory up to :data:`SPOOL_MAX_BYTES`, disk beyond),
so the decoders read them like files, and Pillow reads a header without touching the pixels.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from typing import IO

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from lusaug.serving.budget import BodyRefused
from lusaug.serving.faults import Reason, Refused
from lusaug.serving.preprocess import MIME_SUFFIXES

# In-memory part of a spooled raw body (Starlette spools multipart parts the same way).
SPOOL_MAX_BYTES = 1 << 20
MULTIPART = "multipart/form-data"


@dataclass
class Upload:
    """One uploaded file: its name, declared type, a seekable file and its size."""

    name: str
    content_type: str
    file: IO[bytes]
    size: int

    def close(self) -> None:
        """Free the spooled data."""
        self.file.close()


def _raw_mime(content_type: str) -> str:
    mime = content_type.split(";")[0].strip().lower()
    return mime if mime.startswith(("image/", "video/")) else ""


async def read_uploads(request: Request, max_files: int) -> list[Upload]:
    """Every uploaded file of ``request``, in order.

    Multipart ``files`` parts (other fields are ignored), or one image/video sent as the raw
    body with its ``Content-Type`` (name from ``?filename=``): the cheapest way to send a frame.

    Raises:
        Refused: neither multipart nor an image/video type (415), a malformed multipart body
            (400), too many parts or a form field over 1 MB (413), no file at all (400).
    """
    ctype = request.headers.get("content-type", "")
    mime = _raw_mime(ctype)
    if mime:
        spool: IO[bytes] = io.BytesIO()  # small bodies stay in memory (most are one frame)
        try:
            async for chunk in request.stream():
                if spool.tell() + len(chunk) > SPOOL_MAX_BYTES and isinstance(spool, io.BytesIO):
                    spool = _to_disk(spool)
                spool.write(chunk)
        except ClientDisconnect as exc:  # nobody reads the answer; no 500 in the log either
            spool.close()
            raise Refused(
                Reason.CLIENT_DISCONNECTED, "the client disconnected during the upload"
            ) from exc
        size = spool.tell()
        spool.seek(0)
        name = request.query_params.get("filename") or "body" + MIME_SUFFIXES.get(mime, "")
        uploads = [Upload(name, mime, spool, size)]
    elif ctype.split(";")[0].strip().lower() == MULTIPART:
        uploads = await _multipart(request, max_files)
    else:
        raise Refused(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            "send multipart/form-data `files` parts, or one image/video as the raw body with "
            "its Content-Type",
        )
    if not uploads:
        raise Refused(Reason.NO_FILES, "no files: send images and videos as multipart `files`")
    return uploads


def _to_disk(buffer: io.BytesIO) -> IO[bytes]:
    """Move a growing in-memory body to an anonymous temporary file."""
    disk = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Upload.close
    disk.write(buffer.getbuffer())
    return disk


async def _multipart(request: Request, max_files: int) -> list[Upload]:
    try:
        form = await request.form(max_files=max_files, max_fields=max_files)
    except BodyRefused:
        raise
    except StarletteHTTPException as exc:  # Starlette's MultiPartException, as a 400
        detail = str(exc.detail)
        if detail.startswith("Too many"):
            reason, hint = Reason.TOO_MANY_FILES, f" (serve.max_files: {max_files})"
        elif "exceeded maximum size" in detail:
            reason, hint = Reason.FIELD_TOO_LARGE, " (a non-file field; files have no such cap)"
        else:
            reason, hint = Reason.MALFORMED_BODY, ""
        raise Refused(reason, f"multipart body refused: {detail}{hint}") from exc
    except Exception as exc:  # the parser's own errors on hostile bodies
        raise Refused(
            Reason.MALFORMED_BODY, f"malformed multipart body ({type(exc).__name__}: {exc})"
        ) from exc
    uploads = []
    for i, (_, value) in enumerate(form.multi_items()):
        if isinstance(value, UploadFile):
            fh = value.file
            size = value.size if value.size is not None else fh.seek(0, 2)
            fh.seek(0)
            if size <= SPOOL_MAX_BYTES:  # in memory anyway: a BytesIO reads faster than the
                fh = io.BytesIO(fh.read())  # spool's wrapper (Pillow reads chunk by chunk)
                value.file.close()
            uploads.append(
                Upload(value.filename or f"file {i}", value.content_type or "", fh, size)
            )
    return uploads
