"""Micro-batching: concurrent requests gathered into one engine batch, answers split back.

An engine scores a batch of 64 prompts in little more time than one, so a service that
scored each request alone would waste it. The batcher waits up to `max_wait_s` after the
first request of a batch (or until `max_items` items are waiting), hands every gathered
request to one `run` call in a worker thread, and gives each request back exactly the slice
of answers that belongs to it. While one batch runs, the next one gathers, so under load the
batches grow by themselves and the wait bound only matters when the service is idle.

`run` executes in one worker thread, one batch at a time: engines are not thread-safe, and
one engine call at a time is what they batch best.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cai.errors import BackendError

RunBatch = Callable[[Sequence[tuple[str, list[Any]]]], list[list[Any]]]


@dataclass
class _Job:
    mode: str
    items: list[Any]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the batcher did: batches run, items in them, and items waiting now."""

    batches: int = 0
    items: int = 0
    requests: int = 0
    waiting_items: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """Gathers `submit` calls into batches for `run`; start it inside the serving loop."""

    def __init__(self, run: RunBatch, max_wait_s: float = 0.005, max_items: int = 256) -> None:
        if max_wait_s < 0 or max_items < 1:
            raise ValueError("max_wait_s must be >= 0 and max_items >= 1")
        self.run = run
        self.max_wait_s = max_wait_s
        self.max_items = max_items
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cai-reward-batch")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="cai-reward-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, mode: str, items: list[Any]) -> list[Any]:
        """The answers to `items` (one per item, in order), from whichever batch takes them."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        self.stats.waiting_items += len(items)
        await self._queue.put(_Job(mode, items, future))
        return await future

    async def _gather(self) -> list[_Job]:
        """One batch: the first waiting job, then more until full or the wait bound passes."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        size = len(batch[0].items)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while size < self.max_items:
            if not self._queue.empty():
                job = self._queue.get_nowait()
            else:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(job)
            size += len(job.items)
        return batch

    async def _one_by_one(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            try:
                answer = await loop.run_in_executor(self._pool, self.run, [(job.mode, job.items)])
            except Exception as err:
                if not job.future.done():
                    job.future.set_exception(err)
                continue
            self.stats.batches += 1
            self.stats.requests += 1
            self.stats.items += len(job.items)
            if not job.future.done():
                job.future.set_result(answer[0])

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            size = sum(len(job.items) for job in batch)
            self.stats.waiting_items -= size
            live = [job for job in batch if not job.future.done()]  # a client gone is skipped
            if not live:
                continue
            work = [(job.mode, job.items) for job in live]
            try:
                answers = await loop.run_in_executor(self._pool, self.run, work)
            except BackendError as err:  # an outage fails this batch's requests, not the service
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            except Exception:
                # Something in one request broke the batch: run each alone, so only that
                # request fails and the others still get their answers.
                await self._one_by_one(live)
                continue
            self.stats.batches += 1
            self.stats.requests += len(live)
            self.stats.items += size
            self.stats.largest_batch = max(self.stats.largest_batch, size)
            for job, answer in zip(live, answers, strict=True):
                if not job.future.done():
                    job.future.set_result(answer)
