"""One engine per model and engine settings in a process, shared by every role that names it.

A win-rate run whose policy, baseline and judge name the same model directory, or a
pipeline whose judge differs from its policy only in its call cache, needs one engine, not
three. `shared_backend(key, build, model_id)` returns a handle on the one `LazyBackend`
registered under `key` (the engine-relevant part of a spec), so the engine still starts
only on first use. Handles are reference counted: `close` of a handle releases it, and the
close of the last handle closes the engine and forgets the entry, so a later request for the
same key starts a fresh engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cai.backends.base import Backend, BackendWrapper
from cai.backends.lazy import LazyBackend


@dataclass
class _Entry:
    backend: LazyBackend
    users: int


_LOCK = threading.Lock()
_ENTRIES: dict[Hashable, _Entry] = {}


class SharedBackend(BackendWrapper):
    """One user's handle on a shared backend; `close` releases this user only."""

    def __init__(self, key: Hashable, entry: _Entry) -> None:
        self._key = key
        self._entry = entry
        self._released = False
        self.model_id = entry.backend.model_id

    @property
    def shared(self) -> LazyBackend:
        """The backend behind every handle of this key."""
        return self._entry.backend

    def wrapped(self) -> Backend:
        return self._entry.backend

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        _release(self._key, self._entry)


def shared_backend(key: Hashable, build: Callable[[], Backend], model_id: str) -> SharedBackend:
    """A handle on the backend registered under `key`, registering a lazy one if none is."""
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is None:
            entry = _ENTRIES[key] = _Entry(LazyBackend(build, model_id), 0)
        entry.users += 1
        return SharedBackend(key, entry)


def _release(key: Hashable, entry: _Entry) -> None:
    with _LOCK:
        entry.users -= 1
        last = entry.users == 0
        if last and _ENTRIES.get(key) is entry:
            del _ENTRIES[key]
    if last:
        entry.backend.close()


def open_entries() -> int:
    """How many shared backends have users now (tests check that runs release theirs)."""
    with _LOCK:
        return len(_ENTRIES)
