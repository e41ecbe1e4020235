"""What a running server holds: the served model (swapped atomically), budgets, batcher, reload.

Hot reload: when the server was started on an alias (``models:/lus-classifier@production``) a
background task polls the registry every ``serve.reload_poll_s`` seconds (``POST /reload``
checks at once). A new version is downloaded, opened and smoke-tested *before* the swap; the
swap is one reference assignment, and each request keeps the model it started with, so
in-flight requests finish on the old session. Any failure leaves the old model serving: the
poll loop logs it and ``POST /reload`` answers 409 (the alias points at something that cannot
serve) or 503 (the registry cannot be reached), with the reason. After a swap the download
cache is pruned to the version in use.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from starlette.concurrency import run_in_threadpool

from lusaug.core.config import ServeParams
from lusaug.core.errors import LusaugError
from lusaug.export.model_input import ImageLimits
from lusaug.export.model_source import current_version
from lusaug.export.onnx_runtime import ModelSourceError
from lusaug.serving.batching import MicroBatcher
from lusaug.serving.budget import MIB, InflightBudget, ServeLimits
from lusaug.serving.preprocess import VideoSampling
from lusaug.serving.prometheus import ServerMetrics
from lusaug.serving.session import LoadedModel, load_model, prune_cache

logger = logging.getLogger(__name__)


class ReloadFailed(LusaugError, RuntimeError):
    """A reload that could not happen; the old model still serves. ``status``: 409 or 503."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# The registry answered, but the model or alias is not there (MLflow reports a missing alias
# as an invalid parameter): the caller's problem (409), not an outage (503).
_MISSING_CODES = frozenset(
    ErrorCode.Name(c) for c in (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE)
)


def _missing(exc: MlflowException) -> bool:
    return exc.error_code in _MISSING_CODES


def describe(model: LoadedModel) -> str:
    """Name, version, alias, ONNX sha256 and source of a model: the log's record of it."""
    version = f"version {model.version}" if model.version else "(a file, not registered)"
    alias = f" @{model.source.alias}" if model.source.alias else ""
    return (
        f"{model.name} {version}{alias}, onnx sha256 {model.clf.info.sha256}, "
        f"from {model.source.uri}"
    )


class ServerState:
    """The served model, the request budgets, the micro-batcher and the reload machinery."""

    def __init__(
        self,
        uri: str,
        cfg: ServeParams,
        sampling: VideoSampling,
        cache_dir: Path | None = None,
        limits: ServeLimits | None = None,
        min_side: int = 1,
    ) -> None:
        """Load ``uri`` now (a bad model fails before anything binds).

        Args:
            uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or an .onnx path.
            cfg: the ``serve`` section.
            sampling: video sampling (the ``frames`` section's rate, ``serve.max_video_frames``).
            cache_dir: where registry versions are downloaded (a temp dir by default).
            limits: the budgets (default: :meth:`ServeLimits.from_config` of ``cfg``).
            min_side: shortest accepted image side (``frames.min_side``).
        """
        self.uri = uri
        self.cfg = cfg
        self.sampling = sampling
        self.limits = limits or ServeLimits.from_config(cfg)
        self.image_limits = ImageLimits(cfg.max_image_side, cfg.max_image_pixels, min_side)
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="lusaug-serve-"))
        self.metrics = ServerMetrics()
        self.budget = InflightBudget(
            int(self.limits.max_inflight_mb * MIB),
            self.limits.admission_wait_s,
            self.limits.retry_after_s,
        )
        self.current = load_model(uri, self.cache_dir, cfg.threads)
        self.metrics.set_model(self.current.name, self.current.version)
        logger.info("serving %s", describe(self.current))
        self.batcher = (
            MicroBatcher(
                cfg.batch_window_ms, cfg.max_batch, cfg.inline_max_frames, self.observe_batch
            )
            if cfg.batch_window_ms > 0
            else None
        )
        self.ready = False  # set once the lifespan has started the batcher (/health/ready)
        self.reloads = 0
        self.last_reload_error = ""
        self._failed_version = ""  # the poll loop does not re-download a version that failed
        self._reload_lock = asyncio.Lock()

    def model_labels(self) -> tuple[str, str]:
        """(name, version) of the model serving now (response headers, metric labels)."""
        return self.current.name, self.current.version

    def observe_batch(self, model: LoadedModel, frames: int) -> None:
        """Record one ONNX run of ``frames`` frames."""
        self.metrics.batch_child(model.name, model.version).observe(frames)

    async def reload(self, *, retry_failed: bool = True) -> dict[str, Any]:
        """Swap in the version the alias points to now, if it moved.

        Raises:
            ReloadFailed: 409 when the alias or its version cannot serve, 503 when the
                registry cannot be reached; the current model keeps serving either way.
        """
        async with self._reload_lock:
            old = self.current
            try:
                latest = await run_in_threadpool(current_version, self.uri)
            except MlflowException as exc:
                status = 409 if _missing(exc) else 503
                raise self._failed(f"cannot read {self.uri}: {exc.message}", status) from exc
            except Exception as exc:  # network, DNS, database: not reachable
                raise self._failed(f"registry unreachable for {self.uri}: {exc}", 503) from exc
            if latest is None or latest == old.version:
                return {"reloaded": False, "version": old.version}
            if latest == self._failed_version and not retry_failed:
                raise ReloadFailed(self.last_reload_error, 409)
            try:
                new = await run_in_threadpool(
                    load_model, self.uri, self.cache_dir, self.cfg.threads
                )
            except Exception as exc:  # whatever it was, the old model stays
                await run_in_threadpool(prune_cache, self.cache_dir, [old.source])
                if isinstance(exc, ModelSourceError):
                    self._failed_version = latest
                    raise self._failed(f"version {latest} cannot serve: {exc}", 409) from exc
                raise self._failed(f"downloading version {latest} failed: {exc}", 503) from exc
            self.current = new  # atomic: requests already running keep `old`
            await run_in_threadpool(prune_cache, self.cache_dir, [new.source])
            self.reloads += 1
            self.last_reload_error = self._failed_version = ""
            self.metrics.reloads.labels("swapped").inc()
            self.metrics.set_model(new.name, new.version)
            logger.info("reloaded: now serving %s (was version %s)", describe(new), old.version)
            return {"reloaded": True, "version": new.version, "previous": old.version}

    def _failed(self, reason: str, status: int) -> ReloadFailed:
        message = f"{reason}; still serving version {self.current.version}"
        self.last_reload_error = message
        self.metrics.reloads.labels("failed").inc()
        return ReloadFailed(message, status)

    async def poll(self) -> None:
        """Check the alias every ``serve.reload_poll_s`` seconds, forever."""
        while True:
            await asyncio.sleep(self.cfg.reload_poll_s)
            try:
                await self.reload(retry_failed=False)
            except ReloadFailed as exc:
                logger.warning("model reload failed: %s", exc)
            except Exception:  # never let the poller die
                logger.exception("model reload check failed; still serving the current model")
