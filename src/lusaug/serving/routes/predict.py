"""``POST /predict``: images and videos in (any mix), one result per file out.

The request's path: read the uploads (spooled, see :mod:`lusaug.serving.uploads`), read their
headers and check the limits (:func:`lusaug.serving.inputs.inspect`: a bad file gets its own
error, a request over its pixel budget is refused whole), take the decode's working memory from
the in-flight budget (wait briefly or 503), decode to model frames (on the event loop only when
the headers bound the work to a few small images, else in the thread pool), run every file's
frames as one model input (micro-batched with concurrent requests) and answer per file: an
image's probabilities, a video's mean over its sampled frames plus each frame's own, or the
file's error. The answer is 200 when any file was predicted; when none was, the files' common
status (:func:`lusaug.serving.faults.batch_status`) with every file's error.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lusaug.export.model_input import BadInput
from lusaug.serving.batching import proba_chunked
from lusaug.serving.faults import FAULTS, batch_status, responses_by_status
from lusaug.serving.inputs import Plan, decode, inspect
from lusaug.serving.preprocess import MIME_SUFFIXES, media_kind
from lusaug.serving.routes import server_state
from lusaug.serving.schemas import (
    ErrorResponse,
    FileError,
    PredictResponse,
    file_results,
    model_ref,
)
from lusaug.serving.session import LoadedModel
from lusaug.serving.state import ServerState
from lusaug.serving.uploads import Upload, read_uploads

router = APIRouter(tags=["predict"])

# The body is parsed by hand (streamed, budgeted), so its schema is declared here: schemathesis
# and clients see both the multipart form and every raw media type.
PREDICT_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "filename",
            "in": "query",
            "required": False,
            "description": "name of a raw-body upload (its suffix picks image or video)",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "images (PNG, JPEG, BMP, TIFF) and videos "
                            "(MP4, AVI, MPEG, GIF, ...), any mix",
                        }
                    },
                    "required": ["files"],
                }
            },
            **{
                mime: {"schema": {"type": "string", "format": "binary"}}
                for mime in sorted(MIME_SUFFIXES)
            },
        },
    },
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "at least one file predicted: one result or error per file"},
    **{
        status: {
            "model": ErrorResponse,
            "description": "; ".join(f"{r.value}: {FAULTS[r].meaning}" for r in reasons),
        }
        for status, reasons in responses_by_status().items()
    },
}


def _images_only(uploads: list[Upload]) -> bool:
    for u in uploads:
        try:
            if media_kind(u.name, u.content_type)[0] != "image":
                return False
        except BadInput:
            pass  # refused from its name alone: nothing to decode
    return True


async def _inspect(state: ServerState, model: LoadedModel, uploads: list[Upload]) -> Plan:
    """Inspect the uploads (on the loop when they are a few small images)."""
    files = [(u.name, u.content_type, u.file) for u in uploads]
    limits = state.limits
    spec = model.clf.info.frame_spec
    args = (files, state.image_limits, state.sampling, spec, limits.max_request_pixels)
    # Image headers of a small body parse in microseconds; a video's never on the loop (opening
    # it probes the stream, which decodes frames).
    small = sum(u.size for u in uploads) <= limits.inline_inspect_bytes
    if small and _images_only(uploads):
        return inspect(*args)
    return await run_in_threadpool(inspect, *args)


async def _decode(state: ServerState, model: LoadedModel, plan: Plan) -> None:
    spec = model.clf.info.frame_spec
    args = (plan, spec, state.sampling, state.limits.max_request_pixels)
    what = f"decoding {len(plan.passed)} file(s)"
    if not state.budget.try_take(plan.decode_bytes):  # the common case: no wait, no await
        await state.budget.take(plan.decode_bytes, what)
    try:
        if not plan.has_video and plan.pixels <= state.limits.inline_decode_pixels:
            decode(*args)  # a few small images: cheaper than the hop to the thread pool
        else:
            await run_in_threadpool(decode, *args)
    finally:
        state.budget.give(plan.decode_bytes)


def _failed(state: ServerState, results: list[FileError]) -> Response:
    status, reason = batch_status([r.reason for r in results])
    state.metrics.refused.labels(reason.value).inc()
    shown = "; ".join(r.error for r in results[:3])
    more = f"; and {len(results) - 3} more" if len(results) > 3 else ""
    body = ErrorResponse(
        detail=f"no file could be predicted: {shown}{more}", reason=reason, results=results
    )
    return Response(body.model_dump_json(), status, media_type="application/json")


@router.post(
    "/predict",
    openapi_extra=PREDICT_OPENAPI,
    response_model=PredictResponse,
    responses=PREDICT_RESPONSES,
)
async def predict(request: Request) -> Response:
    """Class probabilities per file: each image; each video's sampled frames and their mean.

    Send any mix of images and videos as multipart `files` (up to serve.max_files), or one
    file as the raw body with its Content-Type. Each file gets its own result or its own error
    (status and reason); the answer is 200 when at least one file was predicted.
    """
    t0 = time.perf_counter()
    state = server_state(request)
    batcher = state.batcher
    if batcher is not None:
        batcher.announce()  # the batcher may wait for this request while it decodes
    submitted = False
    uploads: list[Upload] = []
    plan: Plan | None = None
    probs: np.ndarray | None = None
    try:
        uploads = await read_uploads(request, state.cfg.max_files)
        model = state.current  # this request runs on this model even if a reload happens
        plan = await _inspect(state, model, uploads)
        if plan.passed:
            await _decode(state, model, plan)
        passed = plan.passed
        if passed:
            x = model.clf.normalise(np.concatenate([e.frames for e in passed]))
            if batcher is not None:
                submitted = True
                probs = await batcher.submit(model, x)
            else:
                probs = await run_in_threadpool(proba_chunked, model, x, state.cfg.max_batch)
                state.observe_batch(model, len(x))
    finally:
        if batcher is not None and not submitted:
            batcher.withdraw()
        if plan is not None:
            plan.close()
        for u in uploads:
            u.close()
    results = file_results(plan.entries, probs, model.clf.info.classes)
    state.metrics.count_results(model.name, model.version, results)
    if probs is None:
        return _failed(state, results)
    answer = PredictResponse(
        results=results,
        predicted=len(passed),
        failed=len(results) - len(passed),
        model=model_ref(model.source, model.clf),
        classes=model.clf.info.classes,
        elapsed_ms=round(1000 * (time.perf_counter() - t0), 2),
    )
    # The version this request ran on, even if a reload swapped the model meanwhile.
    headers = {"x-model-version": model.version or "-"}
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)
