"""A backend that builds its engine on the first call that needs a model.

Starting a vLLM engine costs tens of seconds and gigabytes, so nothing should start one
before there is work for it: a fully resumed run, a stage whose chunks are all done, a
command that fails its checks. `LazyBackend` knows its `model_id` up front (cache keys and
resume fingerprints need it before any call) and builds the real backend on the first
batch that is not empty (or on `backend()`). `close` of a backend never built does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cai.backends.base import Backend, BackendError, BackendWrapper, CallStats


class LazyBackend(BackendWrapper):
    """`build()` on first use; its result must report the `model_id` promised here."""

    def __init__(self, build: Callable[[], Backend], model_id: str) -> None:
        self._build = build
        self._inner: Backend | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.model_id = model_id

    @property
    def built(self) -> bool:
        """Whether the real backend exists (an engine was started)."""
        return self._inner is not None

    def backend(self) -> Backend:
        """The real backend, built now if it is not yet."""
        with self._lock:
            if self._closed:
                raise BackendError(
                    f"the backend of {self.model_id} was closed and cannot be used again",
                    fix="Build a new backend (make_backend) for further calls.",
                )
            if self._inner is None:
                inner = self._build()
                if inner.model_id != self.model_id:
                    inner.close()
                    raise BackendError(
                        f"the engine loaded {inner.model_id!r}, not the {self.model_id!r} its "
                        "settings promised (cache keys and resume fingerprints use the latter)",
                        key="dtype",
                        fix="Set dtype to one this device runs as is (float32 on a CPU).",
                    )
                self._inner = inner
            return self._inner

    @property
    def stats(self) -> CallStats | None:
        """The real backend's, once built (reading it starts nothing)."""
        return self._inner.stats if self._inner is not None else None

    @property
    def last_served(self) -> list[bool] | None:
        return self._inner.last_served if self._inner is not None else None

    def wrapped(self) -> Backend:
        return self.backend()

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """The real backend's, once built (reading them starts nothing)."""
        return self._inner.endpoint_stats() if self._inner is not None else []

    def close(self) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
            self._closed = True
        if inner is not None:
            inner.close()
