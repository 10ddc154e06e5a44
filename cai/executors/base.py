"""The executor interface: chunks of items in, each chunk's rows out, in input order.

A stage hands an executor a *worker recipe*: a picklable description of the object that
processes one chunk plus the `BackendSpec` its backend is built from (each stage file in
`cai/stages/` defines its own recipe; the executors know only this protocol). The executor builds the worker where the
work happens (this process, or each Ray actor) with `recipe.build(backend)`, so both executors
run the same code on every chunk.

    executor.open(recipe) -> ExecutorSession      (workers built, model identity known)
    session.map([(index, chunk), ...]) -> (index, rows), ...   in the order given
    session.report() -> ExecutorReport            (items and seconds per actor, restarts)

The executor never writes a file. `ChunkedJob.run` stays the single writer: it skips chunks
already committed, passes the rest to `session.map` lazily (so a million items never sit in
memory) and commits each chunk's rows as they come back. Resume, the call cache and every
output file are therefore the same whichever executor ran the chunks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from cai.backends import Backend, BackendSpec
from cai.jobs import EncodedRows

Chunk = list[Any]
Rows = list[dict[str, Any]]


# ---- what runs on a chunk ---------------------------------------------------------------------
class ChunkWorker(ABC):
    """Processes one chunk into its rows; built from a recipe around one backend."""

    model_id: str

    @abstractmethod
    def process(self, chunk: Chunk) -> Rows:
        """The rows of one chunk, in item order (JSON-ready dicts)."""

    def counters(self) -> dict[str, int]:
        """Running totals this worker keeps (model requests, cache hits); summed per chunk."""
        return {}

    def endpoints(self) -> list[dict[str, Any]]:
        """The servers behind this worker's HTTP backends as they stand now (the concurrency
        chosen for each, its requests, throttles and queueing): the latest one is reported."""
        return []


def backend_counters(backend: Backend) -> dict[str, int]:
    """The call cache's hits, misses and failed answers, when the backend has a cache."""
    stats = getattr(backend, "stats", None)
    if stats is None or not hasattr(stats, "hits"):
        return {}
    return {
        "cache_hits": int(stats.hits),
        "cache_misses": int(stats.misses),
        "cache_failed": int(getattr(stats, "failed", 0)),
    }


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in after.items()}


@dataclass
class WorkerRecipe(ABC):
    """A picklable description of a stage's `ChunkWorker`.

    `backend` is the spec each executor builds the backend from (None when the caller hands
    the local executor a backend object, which cannot travel to another process).
    """

    backend: BackendSpec | None

    stage: ClassVar[str] = "stage"

    @abstractmethod
    def build(self, backend: Backend) -> ChunkWorker:
        """The worker around `backend` (called where the chunks are processed)."""


# ---- what a run reports ------------------------------------------------------------------------
class ActorReport(BaseModel):
    """One worker's share: items and busy seconds (processing chunks, not waiting)."""

    name: str
    node: str | None = None
    pid: int | None = None
    items: int = 0
    chunks: int = 0
    seconds: float = 0.0
    items_per_second: float | None = None
    died: bool = False
    replaces: str | None = None


class ExecutorReport(BaseModel):
    """The `executor` block of a stage summary."""

    kind: str
    actors: int
    restarts: int = 0
    chunks: int = 0
    items: int = 0
    seconds: float = 0.0
    """Wall seconds the chunks took, from the first dispatch to the last result."""
    items_per_second: float | None = None
    per_actor: list[ActorReport] = Field(default_factory=list)
    counters: dict[str, int] = Field(default_factory=dict)
    """Summed over the chunks committed this run (e.g. judge requests, call cache hits)."""
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    """Per server of an HTTP backend, per actor: the client's chosen concurrency, requests,
    throttled answers and mean queueing time (`cai.backends.http_limits`)."""

    def lines(self) -> list[str]:
        """A Ray run's line (a local run adds none), and one line per HTTP server."""
        servers = [_endpoint_line(e) for e in self.endpoints]
        if self.kind == "local":
            return servers
        rate = f", {self.items_per_second:.1f} items/s" if self.items_per_second else ""
        shares = ", ".join(
            f"{a.name} {a.items}"
            + (f" ({a.items_per_second:.1f}/s)" if a.items_per_second else "")
            + (" died" if a.died else "")
            for a in self.per_actor
            if a.items or a.died
        )
        restarts = f", {self.restarts} actor restart(s)" if self.restarts else ""
        return [
            f"executor: {self.kind}, {self.actors} actor(s){rate}{restarts}"
            + (f"; {shares}" if shares else ""),
            *servers,
        ]


def _endpoint_line(entry: dict[str, Any]) -> str:
    actor = f" ({entry['actor']})" if entry.get("actor") else ""
    line = f"server {entry.get('url')}{actor}: {entry.get('requests', 0)} requests"
    if "concurrency" in entry:
        line += (
            f", concurrency {entry['concurrency']} (peak {entry.get('peak_concurrency')}), "
            f"{entry.get('mean_queue_ms', 0)} ms queued per request"
        )
    if entry.get("throttled"):
        line += f", {entry['throttled']} throttled (429/503)"
    return line


class Ledger:
    """Bookkeeping shared by the executors: per-actor items and seconds, counters, restarts."""

    def __init__(self, kind: str, actors: int) -> None:
        self.kind = kind
        self.actors = actors
        self.per_actor: dict[str, ActorReport] = {}
        self.counters: dict[str, int] = {}
        self.endpoints: dict[str, list[dict[str, Any]]] = {}
        self.restarts = 0
        self.seconds = 0.0
        self._since: float | None = None

    def actor(self, name: str, **info: Any) -> ActorReport:
        entry = self.per_actor.get(name)
        if entry is None:
            entry = self.per_actor[name] = ActorReport(name=name)
        for key, value in info.items():
            setattr(entry, key, value)
        return entry

    def record(
        self,
        name: str,
        items: int,
        seconds: float,
        counters: dict[str, int],
        endpoints: list[dict[str, Any]] | None = None,
    ) -> None:
        if endpoints:
            self.endpoints[name] = endpoints
        entry = self.actor(name)
        entry.items += items
        entry.chunks += 1
        entry.seconds += seconds
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def report(self) -> ExecutorReport:
        actors = []
        for entry in self.per_actor.values():
            copy = entry.model_copy()
            copy.seconds = round(entry.seconds, 3)
            copy.items_per_second = (
                round(entry.items / entry.seconds, 2) if entry.seconds > 0 else None
            )
            actors.append(copy)
        items = sum(a.items for a in actors)
        return ExecutorReport(
            kind=self.kind,
            actors=self.actors,
            restarts=self.restarts,
            chunks=sum(a.chunks for a in actors),
            items=items,
            seconds=round(self.seconds, 3),
            items_per_second=round(items / self.seconds, 2) if self.seconds > 0 else None,
            per_actor=actors,
            counters=dict(self.counters),
            endpoints=[
                {**entry, **({"actor": name} if len(self.endpoints) > 1 else {})}
                for name, entries in self.endpoints.items()
                for entry in entries
            ],
        )


# ---- sessions and executors ----------------------------------------------------------------
class ExecutorSession(ABC):
    """Workers built for one stage; `map` may be called more than once, then `close`."""

    kind: str = "local"
    label: str = ""
    """Shown beside the progress bar's description (e.g. 'ray x4'); empty for local."""
    model_id: str

    @abstractmethod
    def map(self, chunks: Iterable[tuple[int, Chunk]]) -> Iterator[tuple[int, Rows | EncodedRows]]:
        """Each chunk's rows (dicts, or `EncodedRows` encoded where they were made), yielded
        in the order the chunks were given.

        `chunks` is read lazily: only as many chunks as the executor has room for are taken
        from it at a time.
        """

    @abstractmethod
    def report(self) -> ExecutorReport: ...

    def close(self, failed: bool = False) -> None:  # noqa: B027 - optional hook
        """Release what the session holds (`failed`: it ended on an error)."""

    def __enter__(self) -> ExecutorSession:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close(failed=exc_type is not None)


class Executor(ABC):
    """Where chunks are processed. One executor may serve several stages of a run."""

    kind: str = "local"

    @abstractmethod
    def open(
        self,
        recipe: WorkerRecipe,
        *,
        backend: Backend | None = None,
        worker: ChunkWorker | None = None,
    ) -> ExecutorSession:
        """Workers for `recipe`. The local executor may be given the `backend` (or the whole
        `worker`) to use; the Ray executor builds both inside each actor from the recipe."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything (actors, a Ray instance started for the run)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
