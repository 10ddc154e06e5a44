"""The driver side of the Ray executor: the pool of actors and one stage's session on it.

The session hands chunks to actors with room (at most `max_in_flight_per_actor` each, and a
window of 2 x actors x that many taken from the input before the oldest is committed), hands
results on in input order, and replaces an actor that dies, retrying its chunks on the others.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cai.executors.base import Chunk, ExecutorReport, ExecutorSession, Ledger, WorkerRecipe
from cai.executors.config import ExecutorConfig
from cai.executors.ray_base import (
    ExecutorError,
    forwarded_env,
    one_line,
    raise_task_error,
    retryable,
)
from cai.jobs import EncodedRows

_SHUTDOWN_WAIT_S = 60.0


@dataclass
class _Slot:
    name: str
    handle: Any
    alive: bool = True
    inflight: set[Any] = field(default_factory=set)


@dataclass
class _Task:
    seq: int
    index: int
    chunk: Chunk
    slot: _Slot | None = None


@dataclass
class _Feed:
    """The chunks of one `map` call: taken lazily within a window, retried, handed on in order."""

    source: Iterator[tuple[int, Chunk]]
    window: int
    exhausted: bool = False
    next_seq: int = 0
    next_out: int = 0
    retry: list[_Task] = field(default_factory=list)
    refs: dict[Any, _Task] = field(default_factory=dict)
    done: dict[int, tuple[int, EncodedRows]] = field(default_factory=dict)

    def next_task(self) -> _Task | None:
        """A chunk to retry first, then a new one while the window allows (None: none now)."""
        if self.retry:
            self.retry.sort(key=lambda t: t.seq)
            return self.retry.pop(0)
        if self.exhausted or self.next_seq - self.next_out >= self.window:
            return None
        try:
            index, chunk = next(self.source)
        except StopIteration:
            self.exhausted = True
            return None
        self.next_seq += 1
        return _Task(self.next_seq - 1, index, chunk)


class Pool:
    """The actors of one engine key; survives from stage to stage while that key is asked for."""

    def __init__(self, ray, actor_class: Any, key: str, gpus: float, cpus: float) -> None:
        self.ray = ray
        self.actor_class = actor_class
        self.key = key
        self.gpus, self.cpus = gpus, cpus
        self.slots: list[_Slot] = []
        self._count = 0
        self.broken = False

    def new_slot(self) -> _Slot:
        options: dict[str, Any] = {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        handle = self.actor_class.options(**options).remote()
        slot = _Slot(name=f"actor-{self._count}", handle=handle)
        self._count += 1
        self.slots.append(slot)
        return slot

    def live(self) -> list[_Slot]:
        return [s for s in self.slots if s.alive]

    def drop(self, slot: _Slot) -> None:
        slot.alive = False
        with contextlib.suppress(Exception):
            self.ray.kill(slot.handle, no_restart=True)

    def close(self) -> None:
        live = self.live()
        refs = []
        for slot in live:
            with contextlib.suppress(Exception):
                refs.append(slot.handle.shutdown.remote())
        if refs:
            with contextlib.suppress(Exception):
                self.ray.wait(refs, num_returns=len(refs), timeout=_SHUTDOWN_WAIT_S)
        for slot in live:
            self.drop(slot)
        self.slots.clear()


class RaySession(ExecutorSession):
    kind = "ray"

    def __init__(
        self,
        pool: Pool,
        recipe: WorkerRecipe,
        config: ExecutorConfig,
        *,
        on_dispatch: Callable[[int, Any], None] | None,
        on_close: Callable[[Pool], None],
        resources: Callable[[], str],
    ) -> None:
        self.config = config
        self.pool = pool
        self.ray = pool.ray
        self.recipe = recipe
        self.on_dispatch = on_dispatch
        self._on_close = on_close
        self._resources = resources
        self._lost_errors = retryable(pool.ray)
        self.label = f"ray x{self.config.actors}"
        self._env = forwarded_env()
        self._ledger = Ledger("ray", actors=self.config.actors)
        self._setups: dict[Any, _Slot] = {}
        self._last_death: str | None = None
        self._start()

    # starting ---------------------------------------------------------------------------------
    def _setup(self, slot: _Slot) -> Any:
        ref = slot.handle.setup.remote(self.recipe, self._env)
        self._setups[ref] = slot
        return ref

    def _start(self) -> None:
        """Every actor set up for this stage (engines loaded, or kept from the last stage).

        An actor that dies while loading is replaced like one that dies later (it counts
        toward max_restarts); an error raised by cai while loading (a missing model, bad
        templates) stops the run at once.
        """
        ray = self.ray
        while len(self.pool.live()) < self.config.actors:
            self.pool.new_slot()
        for slot in self.pool.live():
            self._ledger.actor(slot.name)  # the report lists actors in the pool's order
            self._setup(slot)
        deadline = time.monotonic() + self.config.start_timeout_s
        model_ids = set()
        while self._setups:
            remaining = max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._setups), num_returns=1, timeout=remaining)
            if not ready:
                self.pool.broken = True
                raise ExecutorError(
                    f"{len(self._setups)} of {self.config.actors} Ray actors did not start "
                    f"within {self.config.start_timeout_s:.0f} s (each asks for "
                    f"{self.pool.gpus:g} GPU(s) and {self.pool.cpus:g} CPU(s); the cluster has "
                    f"{self._resources()})",
                    key="executor",
                    fix="Check `ray status` for free resources and the actors' logs, lower "
                    "executor.actors, or raise executor.start_timeout_s for slow model loads.",
                )
            slot = self._setups.pop(ready[0])
            try:
                info = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                self.pool.broken = True
                raise_task_error(err)
            except self._lost_errors as err:
                self._lost(slot, err, {}, [])
                continue
            self._note(slot, info)
            model_ids.add(info["model_id"])
        if len(model_ids) != 1:
            self.pool.broken = True
            raise ExecutorError(
                f"the Ray actors loaded different models: {sorted(model_ids)}",
                key="executor",
                fix="Give every node the same model files (or the same hub revision).",
            )
        self.model_id = model_ids.pop()

    def _note(self, slot: _Slot, info: dict[str, Any]) -> None:
        node = info.get("node")
        where = f"{info.get('host')}/{node[:8]}" if node else info.get("host")
        self._ledger.actor(slot.name, node=where, pid=info.get("pid"))

    # running ----------------------------------------------------------------------------------
    def _free_slot(self) -> _Slot | None:
        limit = self.config.max_in_flight_per_actor
        free = [s for s in self.pool.live() if len(s.inflight) < limit]
        return min(free, key=lambda s: len(s.inflight)) if free else None

    def _lost(self, slot: _Slot, err: BaseException, refs: dict[Any, _Task], retry: list) -> None:
        """An actor died: its chunks go back in the queue and a fresh actor takes its place."""
        self._last_death = one_line(err)
        for ref in list(slot.inflight):
            task = refs.pop(ref, None)
            if task is not None:
                retry.append(task)
        slot.inflight.clear()
        for ref in [r for r, s in self._setups.items() if s is slot]:
            self._setups.pop(ref)
        self._ledger.actor(slot.name, died=True)
        self.pool.drop(slot)
        self._ledger.restarts += 1
        if self._ledger.restarts > self.config.max_restarts:
            self.pool.broken = True
            raise ExecutorError(
                f"gave up after {self._ledger.restarts} Ray actor deaths in the "
                f"{self.recipe.stage} stage (max_restarts={self.config.max_restarts}); last: "
                f"{self._last_death}",
                key="executor.max_restarts",
                fix="Chunks committed so far are kept: find why the actors die (`ray logs`, "
                "node health, memory), then rerun the same command to resume.",
            )
        fresh = self.pool.new_slot()
        self._ledger.actor(fresh.name, replaces=slot.name)
        self._setup(fresh)

    def map(self, chunks: Iterable[tuple[int, Chunk]]) -> Iterator[tuple[int, EncodedRows]]:
        window = 2 * self.config.actors * self.config.max_in_flight_per_actor
        feed = _Feed(iter(chunks), window)
        self._ledger.start()
        finished = False
        try:
            while True:
                self._dispatch(feed)
                while feed.next_out in feed.done:  # hand on finished chunks in input order
                    yield feed.done.pop(feed.next_out)
                    feed.next_out += 1
                if feed.exhausted and not feed.refs and not feed.retry:
                    finished = True
                    return
                pending = [*feed.refs, *self._setups]
                if not pending:
                    # Every chunk in flight came back while the window was full, and handing
                    # them on just made room: dispatch again before waiting on anything.
                    continue
                [ref], _ = self.ray.wait(pending, num_returns=1)
                if ref in self._setups:
                    self._replacement_ready(ref, feed)
                else:
                    self._chunk_ready(ref, feed)
        finally:
            self._ledger.stop()
            if not finished:
                # Stopped early (an error, or the caller stopped reading): whatever the actors
                # still hold is abandoned, so the pool is not reused.
                self.pool.broken = True

    def _dispatch(self, feed: _Feed) -> None:
        """Hand out work while some actor has room."""
        while (slot := self._free_slot()) is not None:
            task = feed.next_task()
            if task is None:
                return
            if self.on_dispatch is not None:
                self.on_dispatch(task.seq, slot.handle)
            ref = slot.handle.process.remote(task.chunk)
            task.slot = slot
            feed.refs[ref] = task
            slot.inflight.add(ref)

    def _replacement_ready(self, ref: Any, feed: _Feed) -> None:
        """A replacement actor finished (or failed) loading its engine."""
        slot = self._setups.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            self.pool.broken = True
            raise_task_error(err)
        except self._lost_errors as err:
            self._lost(slot, err, feed.refs, feed.retry)
            return
        if info["model_id"] != self.model_id:
            self.pool.broken = True
            raise ExecutorError(
                f"a replacement Ray actor loaded {info['model_id']!r}, not {self.model_id!r}",
                key="executor",
                fix="Give every node the same model files (or hub revision).",
            )
        self._note(slot, info)

    def _chunk_ready(self, ref: Any, feed: _Feed) -> None:
        """A chunk came back: its rows wait for their turn, or it goes back in the queue."""
        task = feed.refs.pop(ref)
        slot = task.slot
        assert slot is not None
        slot.inflight.discard(ref)
        try:
            rows, seconds, counters, endpoints = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            self.pool.broken = True
            raise_task_error(err)
        except self._lost_errors as err:
            feed.retry.append(task)
            if slot.alive:
                self._lost(slot, err, feed.refs, feed.retry)
            return
        self._ledger.record(slot.name, len(task.chunk), seconds, counters, endpoints)
        feed.done[task.seq] = (task.index, rows)

    def report(self) -> ExecutorReport:
        return self._ledger.report()

    def close(self, failed: bool = False) -> None:
        if failed:
            self.pool.broken = True
        self._on_close(self.pool)
