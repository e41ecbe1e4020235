"""What one request may cost and what all requests together may hold, enforced before the work.

* Per request: the body size (``serve.max_request_mb``, cut off while it streams in) and the
  decoded pixels (:attr:`ServeLimits.max_request_pixels`: images and kept video frames, each
  counted padded to a square, summed from the headers before anything is decoded).
* Across requests (:class:`InflightBudget`): the bytes of request bodies being received or held,
  plus the working memory of every decode under way (estimated from the headers). A request
  that would overrun it waits up to :attr:`ServeLimits.admission_wait_s`, then gets 503 with
  ``Retry-After``, so memory stays bounded however many requests arrive at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from lusaug.serving.faults import Reason, Refused

MIB = 2**20
# How often a waiting request re-checks the budget: short against admission_wait_s, long
# enough that 32 waiters cost nothing measurable.
BUDGET_POLL_S = 0.005


@dataclass(frozen=True)
class ServeLimits:
    """The request and in-flight limits of ``serve:`` (defaults: what the hostile-mix benchmark
    was measured with, BENCHMARKS.md; params.yaml carries the same values)."""

    # 2**28: sixteen 4096x4096 images, or ~70 s of 640x480 video at 3 fps; a 64 x 4096^2 PNG
    # bomb (2**30) or a 10 s static 4K clip (30 x 3840^2 = 2**28.7) is refused.
    max_request_pixels: int = 268_435_456
    # Bodies in flight + decode working sets, across requests: ~4 worst-case decodes at once,
    # which keeps peak RSS (~300 MB idle) well under 1.5 GiB.
    max_inflight_mb: float = 512.0
    # How long a request waits for that budget before 503 (a busy server frees it in ~0.1 s).
    admission_wait_s: float = 2.0
    retry_after_s: int = 1  # the 503's Retry-After header (seconds)
    # Padded pixels up to which images decode on the event loop: 256 x 256 decodes in ~0.1 ms,
    # cheaper than a hop to the thread pool and strictly bounded (judged from the header).
    inline_decode_pixels: int = 65_536
    # Bodies up to this size have their headers read on the event loop (bounded parsing).
    inline_inspect_bytes: int = 262_144

    @classmethod
    def from_config(cls, serve: Any) -> ServeLimits:
        """The ``serve`` section's values of these keys."""
        return cls(**{f.name: getattr(serve, f.name) for f in dataclasses.fields(cls)})


class Overloaded(Refused):
    """The in-flight budget stayed full for the whole admission wait (-> 503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(Reason.BUSY, message)
        self.headers = {"Retry-After": str(retry_after_s)}


class InflightBudget:
    """Bytes held by requests in flight; used from the event loop only (no lock needed)."""

    def __init__(self, capacity_bytes: int, wait_s: float, retry_after_s: int) -> None:
        self.capacity = capacity_bytes
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.in_use = 0
        self.peak = 0  # most bytes ever held at once (/metadata, tests)
        self.refused = 0  # requests answered 503

    def try_take(self, n: int) -> bool:
        """Take ``n`` bytes if they fit now."""
        if self.in_use + n > self.capacity:
            return False
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        return True

    async def take(self, n: int, what: str) -> None:
        """Take ``n`` bytes, waiting up to ``wait_s`` for them.

        Raises:
            Refused: ``n`` exceeds the whole budget (413).
            Overloaded: the budget stayed full (503).
        """
        if n > self.capacity:
            raise Refused(
                Reason.INFLIGHT_BUDGET,
                f"{what} needs ~{n / MIB:.0f} MiB, more than the server's whole in-flight "
                f"budget of {self.capacity / MIB:.0f} MiB",
            )
        deadline = time.monotonic() + self.wait_s
        while not self.try_take(n):
            if time.monotonic() >= deadline:
                self.refused += 1
                raise Overloaded(
                    f"server busy: {what} needs ~{n / MIB:.1f} MiB of the in-flight budget "
                    f"({self.in_use / MIB:.0f} of {self.capacity / MIB:.0f} MiB in use); "
                    f"retry in {self.retry_after_s} s",
                    self.retry_after_s,
                )
            await asyncio.sleep(BUDGET_POLL_S)

    def give(self, n: int) -> None:
        """Return ``n`` bytes taken before."""
        self.in_use -= n


class BodyRefused(Exception):
    """Raised from ``receive()`` when a body breaks the cap or the budget; never swallow it."""

    def __init__(self, response: JSONResponse, reason: Reason) -> None:
        super().__init__(response.body)
        self.response = response
        self.reason = reason


class BodyLimit:
    """ASGI middleware: a per-request body cap (413) and body bytes counted in the budget.

    The cap applies to the declared ``Content-Length`` at once and to the bytes as they stream
    in (chunked uploads); every received chunk is taken from the in-flight budget and given
    back when the response is done. Each refusal is reported to ``on_refused(reason)`` (the
    refusal counter: these never reach the app's exception handler).
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        budget: InflightBudget,
        on_refused: Callable[[Reason], None] = lambda _: None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget
        self.on_refused = on_refused

    def _too_large(self) -> JSONResponse:
        self.on_refused(Reason.BODY_TOO_LARGE)
        mb = self.max_bytes / MIB
        detail = f"request body over the {mb:g} MB limit (serve.max_request_mb)"
        return JSONResponse({"detail": detail, "reason": Reason.BODY_TOO_LARGE.value}, 413)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers") or []:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._too_large()(scope, receive, send)
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                if seen + n > self.max_bytes:
                    raise BodyRefused(self._too_large(), Reason.BODY_TOO_LARGE)
                if n and not self.budget.try_take(n):
                    try:
                        await self.budget.take(n, "the request body")
                    except Refused as exc:
                        self.on_refused(exc.reason)
                        body = {"detail": str(exc), "reason": exc.reason.value}
                        headers = getattr(exc, "headers", None)
                        raise BodyRefused(
                            JSONResponse(body, exc.status, headers=headers), exc.reason
                        ) from None
                seen += n
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyRefused as refused:
            if not started:
                await refused.response(scope, receive, send)
        finally:
            self.budget.give(seen)
