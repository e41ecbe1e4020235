"""Prometheus metrics and the headers every response carries.

:class:`ServerMetrics` keeps its own registry (several apps can live in one process, as in the
tests): requests by route, method and status, a latency histogram, ONNX batch sizes, refused
requests and refused files by reason (:class:`lusaug.serving.faults.Reason`), predictions by
predicted class (alert on a class share drifting away from what the validation data had) and
reloads, with the serving model's name and version as labels where they apply.
:class:`ResponseMeta` is a pure ASGI middleware (no per-request task, unlike Starlette's
``BaseHTTPMiddleware``) that counts and times every response and adds the model version and the
intended-use note to its headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lusaug.serving.schemas import INTENDED_USE, FileError

INTENDED_USE_HEADER = INTENDED_USE.encode("latin-1")
MODEL_LABELS = ["model_name", "model_version"]
# Latency buckets (s): a one-frame request takes ~1 ms, a 64-image request or a video ~1 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Frames per ONNX run: powers of two up to the largest serve.max_batch in use.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OTHER_ROUTE = "other"  # unknown paths share one label: their number stays bounded


class ServerMetrics:
    """The server's Prometheus collectors, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lusaug_http_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status", *MODEL_LABELS],
            registry=r,
        )
        self.latency = Histogram(
            "lusaug_http_request_duration_seconds",
            "Time from request to the end of the response",
            ["route", "method", *MODEL_LABELS],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_frames = Histogram(
            "lusaug_batch_size_frames",
            "Frames per onnxruntime call (micro-batching merges requests)",
            MODEL_LABELS,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "lusaug_refused_requests",
            "Requests refused as a whole (4xx/503), by reason",
            ["reason"],
            registry=r,
        )
        self.refused_files = Counter(
            "lusaug_refused_files",
            "Uploaded files refused (each with its own error), by reason",
            ["reason"],
            registry=r,
        )
        self.predictions = Counter(
            "lusaug_predictions",
            "Files predicted, by predicted class and kind (image, or video by its mean vote)",
            [*MODEL_LABELS, "label", "kind"],
            registry=r,
        )
        self.reloads = Counter(
            "lusaug_model_reloads", "Model reload attempts, by outcome", ["outcome"], registry=r
        )
        self.model_info = Gauge(
            "lusaug_model_info", "The model being served (value 1)", MODEL_LABELS, registry=r
        )
        self.inflight = Gauge(
            "lusaug_inflight_budget_bytes", "Bytes of the in-flight budget in use", registry=r
        )
        self._children: dict[tuple, tuple[Any, Any]] = {}  # label lookups cost ~2 us each

    def batch_child(self, name: str, version: str) -> Any:
        """The batch-size histogram of one model (cached: a label lookup costs ~2 us)."""
        key = ("batch", name, version)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.batch_frames.labels(name, version)
        return child

    def count_results(self, name: str, version: str, results: Iterable[Any]) -> None:
        """Count each file's prediction by class, or its refusal by reason."""
        for r in results:
            if isinstance(r, FileError):
                self.refused_files.labels(r.reason.value).inc()
            else:
                self.predictions.labels(name, version, r.label, r.kind).inc()

    def set_model(self, name: str, version: str) -> None:
        """Point the model-info gauge at the model now serving."""
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def observe(
        self, route: str, method: str, status: int, name: str, version: str, seconds: float
    ) -> None:
        """Count one response and its latency."""
        key = (route, method, status, name, version)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status), name, version),
                self.latency.labels(route, method, name, version),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class ResponseMeta:
    """ASGI middleware: model version + intended use on every response, and its metrics.

    A route that answered for a specific model (``/predict`` after a hot swap) sets
    ``x-model-version`` itself; the middleware only fills in what is missing.
    """

    def __init__(
        self,
        app: Any,
        metrics: ServerMetrics,
        model: Callable[[], tuple[str, str]],
        routes: set[str],
        prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.model = model  # () -> (name, version) of the model serving now
        self.routes = routes
        self.prefixes = prefixes  # mounted folders (the docs' assets): one label each

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        name, version = self.model()
        answered = {"status": 500, "name": name, "version": version}

        async def send_with_meta(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                own = next((v for k, v in headers if k == b"x-model-version"), None)
                if own is None:
                    headers.append((b"x-model-version", (version or "-").encode("latin-1")))
                else:  # the route answered for the model it ran on
                    answered["version"] = own.decode("latin-1")
                headers.append((b"x-model-name", name.encode("latin-1", "replace")))
                headers.append((b"x-intended-use", INTENDED_USE_HEADER))
                message = {**message, "headers": headers}
                answered["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_meta)
        finally:
            path = scope.get("path", "")
            route = path if path in self.routes else self._route_of(path)
            self.metrics.observe(
                route,
                scope.get("method", ""),
                answered["status"],
                answered["name"],
                "" if answered["version"] == "-" else answered["version"],
                time.perf_counter() - t0,
            )

    def _route_of(self, path: str) -> str:
        return next((p for p in self.prefixes if path.startswith(p + "/")), OTHER_ROUTE)
