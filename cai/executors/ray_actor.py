"""Inside a Ray actor: one backend, the current stage's worker, and the chunks it processes.

The actor builds its engine once and keeps it while consecutive stages ask for the same one
(the call cache is set per stage, not per engine); its rows are encoded here, as the JSONL
text the driver commits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from cai.backends import Backend, make_backend
from cai.backends.cached import CachedBackend
from cai.cache import CallCache
from cai.executors.base import Chunk, ChunkWorker, WorkerRecipe, counter_delta
from cai.executors.ray_base import engine_key
from cai.jobs import EncodedRows, encode_rows
from cai.platform import prepare_vllm_env


class ChunkActor:
    """The process-side half: one backend, the current stage's worker, and `process`."""

    def __init__(self) -> None:
        self._engine: Backend | None = None
        self._engine_key: str | None = None
        self._cache: Any = None
        self._worker: ChunkWorker | None = None

    def setup(self, recipe: WorkerRecipe, env: dict[str, str]) -> dict[str, Any]:
        """Build (or keep) the engine, wrap this stage's call cache, build the worker."""
        self._apply_env(env)
        spec = recipe.backend
        assert spec is not None
        key = engine_key(spec)
        if self._engine is not None and self._engine_key != key:
            self.shutdown()
        if self._engine is None:
            prepare_vllm_env()
            self._engine = make_backend(spec.model_copy(update={"cache_path": None}))
            self._engine_key = key
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        backend = self._engine
        if spec.cache_path:
            self._cache = CallCache(spec.cache_path)
            backend = CachedBackend(self._engine, self._cache)
        self._worker = recipe.build(backend)
        return {
            "model_id": self._worker.model_id,
            "node": _node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    @staticmethod
    def _apply_env(env: dict[str, str]) -> None:
        for key, value in env.items():
            os.environ[key] = value
        config = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
        if config and not Path(config).is_file():
            # The driver routes engine logs to a file on its own node; elsewhere vLLM logs
            # through Ray's worker logs instead.
            os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
        elif config:
            import json
            import logging.config

            with contextlib.suppress(OSError, ValueError, TypeError):
                logging.config.dictConfig(json.loads(Path(config).read_text(encoding="utf-8")))

    def process(
        self, chunk: Chunk
    ) -> tuple[EncodedRows, float, dict[str, int], list[dict[str, Any]]]:
        """The chunk's rows, encoded here as the JSONL text the driver commits, with the
        seconds, the counters and the HTTP servers' numbers (`ChunkWorker.endpoints`)."""
        worker = self._worker
        assert worker is not None, "setup() runs before process()"
        before = worker.counters()
        started = time.perf_counter()
        rows = encode_rows(worker.process(chunk))
        seconds = time.perf_counter() - started
        return rows, seconds, counter_delta(before, worker.counters()), worker.endpoints()

    def shutdown(self) -> None:
        self._worker = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            self._engine_key = None
            engine.close()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - outside Ray
        return None
