"""Micro-batching: concurrent requests share one onnxruntime call.

Each request announces itself when it arrives (:meth:`MicroBatcher.announce`) and later submits
its preprocessed frames with the model it was bound to. One worker task takes the first waiting
request and, while other announced requests are still being decoded, waits up to ``window_ms``
for them (or until ``max_batch`` frames); with nobody else in flight it runs at once, so a lone
request pays no batching delay. Each model's frames run as one batch in a single inference
thread and every request gets its rows back. A lone small request (at most ``inline_max_frames``
frames, nobody else announced or queued) runs on the event loop instead: the hop to the inference
thread and back costs about as much as a small model's whole forward pass. Requests bound to an
old model after a hot reload are still run on that model, so a swap never drops or mixes
in-flight work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Model(Protocol):
    def proba(self, x: np.ndarray) -> np.ndarray: ...


def proba_chunked(model: Model, x: np.ndarray, max_batch: int) -> np.ndarray:
    """Run ``x`` in chunks of at most ``max_batch`` frames."""
    step = max(max_batch, 1)
    return np.concatenate([model.proba(x[i : i + step]) for i in range(0, len(x), step)])


@dataclass
class _Item:
    model: Any
    x: np.ndarray
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects requests for ``window_ms`` and runs them together (one inference thread)."""

    def __init__(
        self,
        window_ms: float,
        max_batch: int,
        inline_max_frames: int = 0,
        on_batch: Callable[[Any, int], None] | None = None,
    ) -> None:
        """Collect for ``window_ms``, run at most ``max_batch`` frames per call.

        ``on_batch(model, frames)`` is called after every ONNX run (the batch-size metric).
        """
        self.on_batch = on_batch
        self.window = max(window_ms, 0.0) / 1000.0
        self.max_batch = max(max_batch, 1)
        self.inline_max_frames = max(inline_max_frames, 0)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()  # None = wake-up marker
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort-batch")
        self._task: asyncio.Task | None = None
        self.batches = 0  # ONNX calls made (for /metadata and tests)
        self.items = 0  # requests served
        self.pending = 0  # requests announced but not yet submitted (still decoding)
        self.inline = 0  # lone requests run on the event loop (no thread hop)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def announce(self) -> None:
        """A request arrived and will submit (or :meth:`withdraw`) after decoding its input."""
        self.pending += 1

    def withdraw(self) -> None:
        """An announced request will not submit (bad input); wake a collector waiting for it."""
        self.pending -= 1
        self._queue.put_nowait(None)

    async def submit(self, model: Any, x: np.ndarray, announced: bool = True) -> np.ndarray:
        """Probabilities for ``x`` (N, 1, S, S) from ``model``, batched with concurrent calls."""
        fut = asyncio.get_running_loop().create_future()
        if announced:
            self.pending -= 1
        self._queue.put_nowait(_Item(model, x, fut))
        return await fut

    async def _collect(self) -> list[_Item]:
        first = None
        while first is None:  # skip wake-up markers
            first = await self._queue.get()
        items, n = [first], len(first.x)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if self.pending <= 0 or remaining <= 0:  # nobody else is coming (soon)
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is not None:
                items.append(item)
                n += len(item.x)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            groups: dict[int, list[_Item]] = {}
            for it in items:
                groups.setdefault(id(it.model), []).append(it)
            for group in groups.values():
                live = [it for it in group if not it.future.done()]  # client may have gone
                if not live:
                    continue
                x = np.concatenate([it.x for it in live])
                lone = len(items) == 1 and self.pending <= 0 and self._queue.empty()
                try:
                    if lone and len(x) <= self.inline_max_frames:
                        probs = proba_chunked(live[0].model, x, self.max_batch)
                        self.inline += 1
                    else:
                        probs = await loop.run_in_executor(
                            self._executor, proba_chunked, live[0].model, x, self.max_batch
                        )
                except Exception as exc:  # noqa: BLE001 - fail these requests, not the loop
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    continue
                self.batches += 1
                if self.on_batch is not None:
                    self.on_batch(live[0].model, len(x))
                start = 0
                for it in live:
                    end = start + len(it.x)
                    if not it.future.done():
                        it.future.set_result(probs[start:end])
                    start = end
                self.items += len(live)
