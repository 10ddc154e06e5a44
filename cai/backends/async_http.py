"""The fleet's requests as coroutines on one event loop, over pooled keep-alive connections.

A thread per request in flight over a synchronous client spends most of a scoring request's
client time on locks and per-request machinery; one asyncio loop (its own thread, so callers
stay synchronous) with aiohttp's connection pool costs about a third as much per request and
degrades far less when other processes load the CPUs. Everything the fleet does stays as
`HttpPool` defines it (the rotation, failover, probing back, outage waits, deadlines, the
error messages): this pool shares that state and only replaces the transport, and adds an
`EndpointGate` per server (adaptive in-flight window, requests and tokens per minute,
`Retry-After`). A 429 or 503 that says when to come back pauses its server until then and
does not count against `max_retries`; the request's deadline still bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cai.backends.base import BackendError
from cai.backends.http import HttpPool
from cai.backends.http_errors import body_message
from cai.backends.http_limits import EndpointGate, EndpointLimits

T = TypeVar("T")
R = TypeVar("R")


class AsyncHttpPool(HttpPool):
    """`HttpPool` whose `arequest` runs on one event loop; `map` drives it from sync code."""

    def __init__(
        self,
        base_urls: list[str],
        limits: list[EndpointLimits] | EndpointLimits | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(base_urls, **settings)
        count = len(self.base_urls)
        per_url = limits if isinstance(limits, list) else [limits or EndpointLimits()] * count
        self.gates = [EndpointGate(lim) for lim in per_url]
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._auth = dict(self.client.headers).get("authorization")
        self._loop = asyncio.new_event_loop()
        self._session: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="cai-http-loop")
        self._thread.daemon = True
        self._thread.start()
        # a pool nobody closed stops its loop when it is dropped
        weakref.finalize(self, self._loop.call_soon_threadsafe, self._loop.stop)

    # driving it from synchronous code -------------------------------------------------------
    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: list[T],
        progress: Callable[[], None] | None = None,
    ) -> list[R]:
        """`fn` over `items` concurrently on the loop, in order; the first error raises."""

        async def one(item: T) -> R:
            result = await fn(item)
            if progress is not None:
                progress()
            return result

        async def every() -> list[R]:
            tasks = [asyncio.ensure_future(one(item)) for item in items]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()

        return asyncio.run_coroutine_threadsafe(every(), self._loop).result()

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per server: its URL, the chosen concurrency, queueing time, requests, throttles."""
        return [
            {"url": url, **gate.stats()}
            for url, gate in zip(self.base_urls, self.gates, strict=True)
        ]

    # one request ------------------------------------------------------------------------
    async def arequest(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *,
        at_root: bool = False, tokens: int = 0,
    ) -> Any:  # fmt: skip
        """`HttpPool.request` as a coroutine, through the endpoints' gates."""
        deadline = time.monotonic() + self.timeout_s
        attempts, sent, last_error, base = 0, 0, "", self.base_urls[0]
        url = base + path
        while True:
            index, waited = await self._aacquire()
            deadline += waited  # waiting out an outage is not this request's time
            gate = self.gates[index]
            if gate.room() <= 0 and len(self.gates) > 1:
                # every server is full: wait for room anywhere, then take the best server
                deadline += await self._wait_for_room(gate)
                continue
            deadline += await gate.enter(tokens)  # queueing for room is not either
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._left(gate, None, "failed")
                break
            if sent:
                self.retries += 1
            sent += 1
            base, url = self._target(index, path, at_root)
            sent_at = time.monotonic()
            try:
                status, body, retry_after = await self._send(method, url, payload, remaining)
            except Exception as err:
                kind, last_error = _classify(err)
                self._left(gate, None, "timeout" if kind == "timeout" else "failed")
                counted, moved, fresh = self._after_transport_error(
                    index, last_error, False, sent_at, kind
                )
                if fresh:
                    deadline = max(deadline, time.monotonic() + self.timeout_s)
            else:
                if status < 400:
                    answer = json.loads(body)
                    used = _used_tokens(answer, tokens)
                    latency = time.monotonic() - sent_at
                    self._left(gate, latency, "ok", used=used, estimate=tokens)
                    self._succeeded(index, sent_at)
                    return answer
                message = body_message(body)
                last_error = f"HTTP {status}: {message}"
                throttled = status in (429, 503)
                self._left(gate, None, "throttled" if throttled else "failed", retry_after)
                counted, moved = self._after_status(index, status, message, url, False, sent_at)
                if throttled and retry_after is not None:
                    counted = False  # the server said when: not a failure of the request
            if counted:
                attempts += 1
                if attempts > self.max_retries:
                    break
            if moved or not counted:
                continue  # on to another server, or back through the paused gate
            pause = min(self._pause(attempts), deadline - time.monotonic())
            gate.paused_until = max(gate.paused_until, time.monotonic() + pause)
            await asyncio.sleep(max(0.0, pause))
        raise self._gave_up(method, url, base, sent, last_error, deadline)

    async def _aacquire(self) -> tuple[int, float]:
        """`HttpPool._acquire` without blocking the loop."""
        started = time.monotonic()
        while True:
            lines: list[str] = []
            with self._lock:
                index, wait = self._try_acquire(lines, room=self._room)
            self._emit(lines)
            if index is not None:
                return index, time.monotonic() - started
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))

    async def _wait_for_room(self, gate: EndpointGate) -> float:
        """Wait until a request ends on any server; the seconds waited (counted as `gate`'s
        queueing)."""
        started = time.monotonic()
        waiter = asyncio.get_running_loop().create_future()
        self._room_waiters.append(waiter)
        await waiter
        queued = time.monotonic() - started
        gate.queued_s += queued
        return queued

    def _left(self, gate: EndpointGate, latency: float | None, outcome: str, *args, **kw) -> None:
        """A request ended on `gate`: tell it, and let a request waiting for room look again."""
        gate.leave(latency, outcome, *args, **kw)
        room = max(1, sum(max(0, g.room()) for g in self.gates))  # a grown window takes more
        while self._room_waiters and room > 0:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _room(self, index: int) -> float:
        """How much more server `index` takes now: a request goes where there is most room
        (a server whose window shrank gets fewer, instead of its turn)."""
        return self.gates[index].room()

    async def _send(
        self, method: str, url: str, payload: dict[str, Any] | None, remaining: float
    ) -> tuple[int, bytes, float | None]:
        """One attempt: (status, body, the Retry-After seconds if the server sent them)."""
        import aiohttp

        if self._session is None:
            headers = {"Authorization": self._auth} if self._auth else {}
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                headers=headers, connector=connector, json_serialize=json.dumps
            )
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            sock_connect=min(self.connect_timeout_s, remaining),
            sock_read=min(self.read_timeout_s or remaining, remaining),
        )
        async with self._session.request(method, url, json=payload, timeout=timeout) as reply:
            body = await reply.read()
            return reply.status, body, _retry_after(reply.headers.get("Retry-After"))

    def close(self) -> None:
        self._closed.set()
        if self._loop.is_running():

            async def shut() -> None:
                if self._session is not None:
                    await self._session.close()

            with contextlib.suppress(Exception):  # closing must not fail a run that ends
                asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        super().close()


def _classify(err: Exception) -> tuple[str, str]:
    """(kind for `HttpPool._after_transport_error`, description) of a failed attempt."""
    import aiohttp

    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return "hard", f"ConnectTimeout: {err}" if str(err) else "ConnectTimeout"
    if isinstance(err, aiohttp.ClientConnectorError):
        return "hard", f"ConnectError: {err.os_error or err}"
    if isinstance(err, asyncio.TimeoutError):
        return "timeout", "ReadTimeout"
    if isinstance(err, aiohttp.ClientError | OSError):
        text = str(err)
        return "dropped", f"{type(err).__name__}: {text}" if text else type(err).__name__
    if isinstance(err, RuntimeError) and "Session is closed" in str(err):
        raise BackendError("The HTTP backend was closed while requests were pending") from err
    raise err


def _used_tokens(answer: Any, estimate: int) -> int | None:
    """The tokens the server says the request used, where a token budget paces it."""
    usage = answer.get("usage") if estimate and isinstance(answer, dict) else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (a number; an HTTP date is treated as absent)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
