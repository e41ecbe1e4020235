"""``POST /predict``: images or one video in, class probabilities out.

The request's path: read the uploads (spooled, see :mod:`lusaug.serving.uploads`), read their
headers and check the limits (:func:`lusaug.serving.inputs.inspect`), take the decode's working
memory from the in-flight budget (wait briefly or 503), decode to model frames (on the event
loop only when the headers bound the work to a few small images, else in the thread pool), run
the model (micro-batched with concurrent requests) and answer per image, or per frame and
aggregated for a video.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lusaug.serving.batching import proba_chunked
from lusaug.serving.inputs import Plan, decode, inspect
from lusaug.serving.preprocess import MIME_SUFFIXES, media_kind
from lusaug.serving.prometheus import INTENDED_USE
from lusaug.serving.routes import server_state
from lusaug.serving.session import LoadedModel
from lusaug.serving.state import ServerState
from lusaug.serving.uploads import Upload, read_uploads

router = APIRouter(tags=["predict"])

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    }
}
# The body is parsed by hand (streamed, budgeted), so the schema is declared here: schemathesis
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
                            "description": "images (PNG, JPEG, BMP, TIFF) or one video",
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
    "responses": {
        "400": {
            "description": "malformed multipart, no files, a video with other files",
            **_ERROR,
        },
        "413": {"description": "over the body, image-size or decoded-pixel limits", **_ERROR},
        "415": {"description": "not an accepted image or video type", **_ERROR},
        "422": {"description": "unreadable, truncated or all-black input", **_ERROR},
        "503": {"description": "busy: in-flight budget full; see Retry-After", **_ERROR},
    },
}


def _probs_dict(classes: list[str], p: np.ndarray) -> dict[str, Any]:
    return {
        "label": classes[int(p.argmax())],
        "prob": float(p.max()),
        "probs": {c: float(v) for c, v in zip(classes, p)},
    }


async def _model_input(state: ServerState, model: LoadedModel, uploads: list[Upload]) -> Plan:
    """Inspect the uploads (on the loop when they are small), then decode within the budget."""
    files = [(u.name, u.content_type, u.file) for u in uploads]
    spec = model.clf.info.frame_spec
    kinds = [media_kind(u.name, u.content_type) for u in uploads]
    limits = state.limits
    args = (files, state.image_limits, state.sampling, spec, limits.max_request_pixels, kinds)
    # Image headers of a small body parse in microseconds; a video's never on the loop (opening
    # it probes the stream, which decodes frames).
    images_only = all(kind == "image" for kind, _ in kinds)
    small = images_only and sum(u.size for u in uploads) <= limits.inline_inspect_bytes
    plan = inspect(*args) if small else await run_in_threadpool(inspect, *args)
    return plan


async def _decode(state: ServerState, model: LoadedModel, plan: Plan) -> np.ndarray:
    spec = model.clf.info.frame_spec
    args = (plan, spec, state.sampling, state.limits.max_request_pixels)
    if not state.budget.try_take(plan.decode_bytes):  # the common case: no wait, no await
        await state.budget.take(plan.decode_bytes, f"decoding {len(plan.names)} file(s)")
    try:
        bounded = plan.video is None and plan.pixels <= state.limits.inline_decode_pixels
        frames = decode(*args) if bounded else await run_in_threadpool(decode, *args)
    finally:
        state.budget.give(plan.decode_bytes)
    return model.clf.normalise(frames)


def _answer(model: LoadedModel, plan: Plan, probs: np.ndarray, t0: float) -> JSONResponse:
    classes = model.clf.info.classes
    if plan.video is not None:
        result: dict[str, Any] = {
            "video": {
                "file": plan.video.name,
                "frames": len(probs),
                **_probs_dict(classes, probs.mean(axis=0)),  # mean-probability vote
            },
            "predictions": [{"frame": i, **_probs_dict(classes, p)} for i, p in enumerate(probs)],
        }
    else:
        result = {
            "predictions": [
                {"file": n, **_probs_dict(classes, p)} for n, p in zip(plan.names, probs)
            ]
        }
    result["model"] = {
        "name": model.source.name,
        "version": model.version,
        "alias": model.source.alias,
        "onnx_sha256": model.clf.info.sha256,
    }
    result["classes"] = classes
    result["intended_use"] = INTENDED_USE
    result["elapsed_ms"] = round(1000 * (time.perf_counter() - t0), 2)
    # The version this request ran on, even if a reload swapped the model meanwhile.
    headers = {"x-model-version": model.version or "-"}
    return JSONResponse(result, headers=headers)  # plain str/float: skip jsonable_encoder


@router.post("/predict", openapi_extra=PREDICT_OPENAPI)
async def predict(request: Request) -> JSONResponse:
    """Class probabilities per image, or per sampled frame and their mean for one video."""
    t0 = time.perf_counter()
    state = server_state(request)
    batcher = state.batcher
    if batcher is not None:
        batcher.announce()  # the batcher may wait for this request while it decodes
    submitted = False
    uploads: list[Upload] = []
    plan: Plan | None = None
    try:
        uploads = await read_uploads(request, state.cfg.max_files)
        model = state.current  # this request runs on this model even if a reload happens
        plan = await _model_input(state, model, uploads)
        x = await _decode(state, model, plan)
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
    return _answer(model, plan, probs, t0)
