"""Every way a /predict request or one of its files can be refused: a reason, and one status each.

The same fault always gets the same code:

* 400: the request itself is malformed (multipart that does not parse, no file in it);
* 413: too much (the body, the number of files, an image's size, the decoded pixels of the
  request, a decode bigger than the server's whole in-flight budget);
* 415: media the server cannot read (a type the frames stage does not read, an empty,
  truncated or corrupt file, a body that is neither multipart nor an image/video);
* 422: media that decodes but cannot be classified (narrower than ``frames.min_side``,
  entirely black);
* 503: busy (the in-flight budget stayed full; ``Retry-After`` says when to retry).

A fault of one file in a batch is that file's own result (its status and reason); the request
still answers 200 when any file was predicted. The reason is also the ``reason`` label of the
``lusaug_refused_requests_total`` and ``lusaug_refused_files_total`` counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lusaug.export.model_input import BadInput


class Reason(StrEnum):
    """Why a request or a file was refused (a bounded set: Prometheus label values)."""

    MALFORMED_BODY = "malformed_body"
    NO_FILES = "no_files"
    CLIENT_DISCONNECTED = "client_disconnected"
    BODY_TOO_LARGE = "body_too_large"
    TOO_MANY_FILES = "too_many_files"
    FIELD_TOO_LARGE = "field_too_large"
    REQUEST_PIXELS = "request_pixel_budget"
    INFLIGHT_BUDGET = "inflight_budget"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    UNSUPPORTED_TYPE = "unsupported_type"
    EMPTY_FILE = "empty_file"
    UNDECODABLE = "undecodable"
    TOO_NARROW = "too_narrow"
    ALL_BLACK = "all_black"
    BUSY = "busy"
    UNREADABLE_PATH = "unreadable_path"  # lusaug predict only
    MIXED = "mixed"  # a request whose files all failed, for different reasons


@dataclass(frozen=True)
class Fault:
    status: int
    meaning: str  # for the README's table and the OpenAPI responses
    http: bool = True  # False: only `lusaug predict` meets it (left out of the OpenAPI)


FAULTS: dict[Reason, Fault] = {
    Reason.MALFORMED_BODY: Fault(400, "the multipart body does not parse"),
    Reason.NO_FILES: Fault(400, "no file in the request"),
    Reason.CLIENT_DISCONNECTED: Fault(400, "the client left during the upload"),
    Reason.BODY_TOO_LARGE: Fault(413, "the body is over serve.max_request_mb"),
    Reason.TOO_MANY_FILES: Fault(413, "more parts than serve.max_files"),
    Reason.FIELD_TOO_LARGE: Fault(413, "a non-file form field over 1 MB"),
    Reason.REQUEST_PIXELS: Fault(413, "the decoded pixels are over serve.max_request_pixels"),
    Reason.INFLIGHT_BUDGET: Fault(413, "one decode needs more than serve.max_inflight_mb"),
    Reason.IMAGE_TOO_LARGE: Fault(
        413, "an image or video frame over serve.max_image_side or max_image_pixels"
    ),
    Reason.UNSUPPORTED_CONTENT_TYPE: Fault(415, "the body is neither multipart nor image/video"),
    Reason.UNSUPPORTED_TYPE: Fault(415, "a file type the frames stage does not read"),
    Reason.EMPTY_FILE: Fault(415, "an empty file"),
    Reason.UNDECODABLE: Fault(415, "not a readable image or video: corrupt or truncated"),
    Reason.TOO_NARROW: Fault(422, "a side shorter than frames.min_side"),
    Reason.ALL_BLACK: Fault(422, "entirely black: nothing left after border trimming"),
    Reason.BUSY: Fault(503, "the in-flight budget stayed full (see Retry-After)"),
    Reason.UNREADABLE_PATH: Fault(400, "lusaug predict: the path cannot be opened", http=False),
    Reason.MIXED: Fault(422, "every file failed, for different reasons (see results)"),
}


class Refused(BadInput):
    """A request or file refused for ``reason``; the status comes from :data:`FAULTS`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message, status=FAULTS[reason].status)
        self.reason = reason


def reason_of(exc: BadInput, undecodable: Reason = Reason.UNDECODABLE) -> Reason:
    """The reason of ``exc``; a plain :class:`BadInput` (from the shared image path in
    :mod:`lusaug.export.model_input`) is classified by its status: 413 too large, 415
    unsupported, 503 busy, and 422 as ``undecodable`` (the call site passes what a 422 means
    there)."""
    if isinstance(exc, Refused):
        return exc.reason
    return {413: Reason.IMAGE_TOO_LARGE, 415: Reason.UNSUPPORTED_TYPE, 503: Reason.BUSY}.get(
        exc.status, undecodable
    )


def as_refused(exc: BadInput, undecodable: Reason = Reason.UNDECODABLE) -> Refused:
    """``exc`` with its reason and that reason's status."""
    if isinstance(exc, Refused):
        return exc
    refused = Refused(reason_of(exc, undecodable), str(exc))
    refused.headers = getattr(exc, "headers", None)
    return refused


def batch_status(reasons: list[Reason]) -> tuple[int, Reason]:
    """(status, reason) of a request whose files all failed: theirs when they agree."""
    if len(set(reasons)) == 1:
        return FAULTS[reasons[0]].status, reasons[0]
    statuses = {FAULTS[r].status for r in reasons}
    if len(statuses) == 1:
        return statuses.pop(), Reason.MIXED
    return FAULTS[Reason.MIXED].status, Reason.MIXED


def responses_by_status() -> dict[int, list[Reason]]:
    """Every status with its reasons (the OpenAPI responses, the README table)."""
    out: dict[int, list[Reason]] = {}
    for reason, fault in FAULTS.items():
        if fault.http:
            out.setdefault(fault.status, []).append(reason)
    return dict(sorted(out.items()))
