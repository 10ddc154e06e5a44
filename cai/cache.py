"""A content-addressed SQLite cache of model calls: resume after a crash, never pay twice.

The key of one call is sha256(model identity + call kind + the full request + the sampling
parameters, including n and seed). `CachedBackend` looks every item of a batch up, sends
only the misses to the engine, in chunks, and commits each chunk's results in one
transaction: a run killed with SIGKILL loses only the chunk in flight, and a rerun of a
finished job makes no model calls at all. WAL mode lets several processes read while one
writes. An unseeded sampling call is cached like any other: a rerun returns the same
samples, which is what resuming means; use a different seed to draw new ones.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from cai.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
    Message,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_model ON calls (model_id, kind);
"""


def call_key(model_id: str, kind: str, request: Any, params: Any = None) -> str:
    """The content address of one call."""
    payload = json.dumps(
        {"model": model_id, "kind": kind, "request": request, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _retry_while_locked(action: Callable[[], Any], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class CacheSummary(BaseModel):
    """What `cai cache stats` prints."""

    path: str
    entries: int
    size_bytes: int
    by_model: dict[str, dict[str, int]]


class CallCache:
    """The SQLite store. Safe for threads of one process and for several processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 60000")
        # Switching to WAL and creating the schema need a lock that SQLite does not wait for
        # (no busy handler), so two processes opening a new cache at once must retry.
        _retry_while_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        _retry_while_locked(lambda: self._conn.executescript(_SCHEMA))

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk
                )
                found.update(rows.fetchall())
        return found

    def put_many(self, model_id: str, kind: str, items: Sequence[tuple[str, str]]) -> None:
        """Store (key, result) pairs in one transaction."""
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO calls (key, model_id, kind, result, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(key, model_id, kind, result, now) for key, result in items],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def summary(self) -> CacheSummary:
        by_model: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT model_id, kind, COUNT(*) FROM calls GROUP BY model_id, kind"
            ).fetchall()
        for model_id, kind, count in rows:
            by_model.setdefault(model_id, {})[kind] = count
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return CacheSummary(
            path=str(self.path),
            entries=sum(sum(k.values()) for k in by_model.values()),
            size_bytes=size,
            by_model=by_model,
        )

    def clear(self, model_id: str | None = None) -> int:
        """Delete every entry (or those of one model); returns how many were removed."""
        with self._lock:
            if model_id is None:
                cursor = self._conn.execute("DELETE FROM calls")
            else:
                cursor = self._conn.execute("DELETE FROM calls WHERE model_id = ?", (model_id,))
            removed = cursor.rowcount
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass
class CallStats:
    """Items answered from the cache (hits) and sent to the engine (misses)."""

    hits: int = 0
    misses: int = 0


class CachedBackend(Backend):
    """Wraps a backend so that only calls absent from the cache reach it.

    Misses go to the engine in batches of `chunk_size` and each batch is committed as one
    transaction: large enough that the engine batches well, small enough that a kill loses
    little. (Stages commit their own chunks too, so their chunk size bounds the loss first.)"""

    def __init__(self, backend: Backend, cache: CallCache, chunk_size: int = 1024) -> None:
        self.inner = backend
        self.cache = cache
        self.chunk_size = chunk_size
        self.model_id = backend.model_id
        self.stats = CallStats()

    def __getattr__(self, name: str):
        """Anything else (tokenizer, max_model_len, ...) comes from the wrapped backend."""
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def _cached(
        self,
        kind: str,
        items: list[T],
        requests: list[Any],
        params: Any,
        run: Callable[[list[T]], list[M]],
        model: type[M],
    ) -> list[M]:
        keys = [call_key(self.model_id, kind, r, params) for r in requests]
        found = self.cache.get_many(keys)
        results: dict[str, M] = {k: model.model_validate_json(v) for k, v in found.items()}
        missing: dict[str, T] = {}
        for key, item in zip(keys, items, strict=True):
            if key not in results and key not in missing:
                missing[key] = item
        self.stats.hits += sum(1 for k in keys if k in found)
        self.stats.misses += len(missing)
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            answers = run([item for _, item in chunk])
            self.cache.put_many(
                self.model_id,
                kind,
                [(key, a.model_dump_json()) for (key, _), a in zip(chunk, answers, strict=True)],
            )
            results.update({key: a for (key, _), a in zip(chunk, answers, strict=True)})
        return [results[k] for k in keys]

    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        return self._cached(
            "chat",
            conversations,
            conversations,
            params.model_dump(mode="json"),
            lambda batch: self.inner.generate_chat(batch, params),
            Generation,
        )

    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        return self._cached(
            "text",
            prompts,
            prompts,
            params.model_dump(mode="json"),
            lambda batch: self.inner.generate_text(batch, params),
            Generation,
        )

    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        return self._cached(
            "score",
            requests,
            [r.model_dump(mode="json") for r in requests],
            None,
            self.inner.score_choices,
            ChoiceScore,
        )

    def close(self) -> None:
        self.inner.close()
        self.cache.close()


def default_cache_path() -> Path:
    from cai.models import cai_home

    return cai_home() / "calls.sqlite"
