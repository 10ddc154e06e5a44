"""A small resilient HTTP client for a fleet of OpenAI-compatible servers.

Several base URLs are used round-robin. A server that stops answering (a refused connection at
once; three failures in a row of timeouts, dropped connections or 5xx) is taken out of
rotation: its requests go to the others while a background thread probes it (`GET /models`,
backoff from `probe_interval_s` up to `max_probe_interval_s`) and puts it back once it answers.
Timeouts, dropped connections, 429 and 5xx are retried with exponential backoff; other 4xx are
the caller's mistake and raise at once with the server's message.

Every request has a total deadline (`timeout_s`) across all its attempts and backoff sleeps,
so a server that never answers is reported after about `timeout_s`, not after retries x
timeout. Inside it, connecting may take `connect_timeout_s` (a few seconds: a live server
accepts at once) and each attempt may wait `read_timeout_s` for the answer.

When no server is in rotation but one of them answered before (it crashed, or is being
restarted), requests wait for one to come back instead of failing: up to `outage_timeout_s`
from the moment the last one went away, with a line on stderr when that happens and every
`notice_every_s` while it lasts. That wait does not count against a request's `timeout_s`
nor its `max_retries`. When the outage deadline passes, each waiting request raises an
`OutageError` naming the URLs and how long they were down (a batch reports the first).

A request whose server is taken out while it waits for the answer goes on at once to another
server (or waits for one); when it lost its time to a timeout there, it gets a whole
`timeout_s` again: a host that died with requests in flight answers nothing, not even a reset.

`discover` is the first contact: it fails fast (no retries, no waiting) on a URL nobody
listens on, and finds the OpenAI routes under `/v1` when the user gave the bare server
address. A URL that never answered is not waited for: a wrong address fails in seconds.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from cai.backends.base import BackendError
from cai.backends.http_errors import (
    OutageError,
    ServerTimeoutError,
    ServerUnavailableError,
    attempts_text,
    describe,
    error_text,
    model_list,
    raise_client_error,
)

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_SERVER_DOWN_STATUS = {500, 502, 503, 504}  # count towards taking a server out of rotation


def print_notice(line: str) -> None:
    """Write one line to stderr without tearing the progress bars drawn there."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


@dataclass
class _Endpoint:
    """What the pool knows about one base URL (guarded by the pool's lock)."""

    healthy: bool = True
    answered: bool = False  # it answered once: when it goes away, it is waited for
    down_since: float | None = None
    up_since: float = 0.0  # when it last came back
    streak: int = 0  # failures in a row
    flaps: int = 0  # times taken out since a request last succeeded there (probe backoff)
    probing: bool = False
    served: int = 0  # requests it answered
    last_error: str = ""


class HttpPool:
    """GET/POST JSON against a fleet of base URLs with failover, probing, retries, deadlines."""

    def __init__(
        self,
        base_urls: list[str],
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_connections: int = 16,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float | None = None,
        outage_timeout_s: float = 600.0,
        probe_interval_s: float = 0.5,
        max_probe_interval_s: float = 2.0,
        failure_threshold: int = 3,
        notice_every_s: float = 30.0,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        if not base_urls:
            raise BackendError(
                "No server URL given",
                fix="Pass at least one base URL ending in /v1, e.g. http://127.0.0.1:8000/v1",
            )
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.outage_timeout_s = outage_timeout_s
        self.probe_interval_s = probe_interval_s
        self.max_probe_interval_s = max_probe_interval_s
        self.failure_threshold = max(1, failure_threshold)
        self.notice_every_s = notice_every_s
        self.notify = notify or print_notice
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers, limits=httpx.Limits(max_connections=max_connections * 2)
        )
        self._cycle = itertools.cycle(range(len(self.base_urls)))
        self._endpoints = [_Endpoint() for _ in self.base_urls]
        self._lock = threading.Condition()
        self._outage_since: float | None = None  # when the last server went out of rotation
        self._next_notice = 0.0
        self.retries = 0
        self.outages = 0  # times every server was out of rotation at once
        self._closed = threading.Event()

    # fleet state ---------------------------------------------------------------------------
    def endpoints(self) -> list[dict[str, Any]]:
        """One dict per base URL: url, healthy, down_s (None when up), served, last_error."""
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "url": url,
                    "healthy": ep.healthy,
                    "down_s": None if ep.down_since is None else now - ep.down_since,
                    "served": ep.served,
                    "last_error": ep.last_error,
                }
                for url, ep in zip(self.base_urls, self._endpoints, strict=True)
            ]

    def _emit(self, lines: list[str]) -> None:
        for line in lines:
            log.info("%s", line)
            try:
                self.notify(line)
            except Exception:  # a broken stderr must not break the requests
                log.debug("could not show %r", line, exc_info=True)

    def _waits_for_outages(self) -> bool:
        """True when a fleet with no server in rotation is waited for (lock held)."""
        return self.outage_timeout_s > 0 and any(ep.answered for ep in self._endpoints)

    def _healthy_count(self) -> int:
        return sum(ep.healthy for ep in self._endpoints)

    def _succeeded(self, index: int, sent_at: float) -> None:
        """An answer from `index` to a request sent at `sent_at`: it is alive, and back in
        rotation if it was out (unless the request was sent before it went out)."""
        lines: list[str] = []
        with self._lock:
            ep = self._endpoints[index]
            ep.answered = True
            ep.served += 1
            if ep.healthy:
                ep.streak = ep.flaps = 0
            elif ep.down_since is not None and sent_at >= ep.down_since:
                ep.flaps = 0
                lines = self._back_in(index)
        self._emit(lines)

    def _failed(
        self, index: int, error: str, hard: bool, pinned: bool, sent_at: float
    ) -> tuple[bool, bool]:
        """Record a failed attempt on `index`: (it counts against max_retries, the request
        moves on: its server is out of rotation and another is in, or the fleet is waited for).

        A `hard` failure (no connection) takes the server out of rotation at once, others
        after `failure_threshold` in a row (a request sent before the server last came back
        says nothing about it now). A hard failure that moves the request costs it nothing.
        """
        lines: list[str] = []
        with self._lock:
            ep = self._endpoints[index]
            ep.last_error = error
            if sent_at >= ep.up_since:
                ep.streak += 1
                if ep.healthy and (hard or ep.streak >= self.failure_threshold):
                    lines = self._take_out(index, error)
            moved = not pinned and not ep.healthy
            moved = moved and bool(self._healthy_count() or self._waits_for_outages())
        self._emit(lines)
        return not (hard and moved), moved

    def _take_out(self, index: int, error: str) -> list[str]:
        """Take `index` out of rotation and start probing it (lock held); the lines to show."""
        now = time.monotonic()
        ep = self._endpoints[index]
        ep.healthy = False
        ep.down_since = now
        url = self.base_urls[index]
        if not ep.probing:
            # a server that answers probes but fails requests is probed more slowly each time
            first_delay = min(self.probe_interval_s * 2**ep.flaps, self.max_probe_interval_s)
            ep.flaps += 1
            ep.probing = True
            threading.Thread(
                target=_probe_until_back,
                args=(weakref.ref(self), index, first_delay),
                name=f"cai-http-probe-{index}",
                daemon=True,
            ).start()
        others = self._healthy_count()
        if others:
            return [
                f"{url} stopped answering ({error}); out of rotation, its requests go to the "
                f"other {others} server{'s' if others > 1 else ''} while it is probed"
            ]
        if not self._waits_for_outages():
            return []
        if self._outage_since is None:
            self._outage_since = now
            self.outages += 1
        self._next_notice = now + self.notice_every_s
        return [
            f"{url} stopped answering ({error}); no server left, waiting for one to come back "
            f"(giving up in {self.outage_timeout_s:.0f} s)"
        ]

    def _back_in(self, index: int) -> list[str]:
        """Put `index` back in rotation (lock held); the lines to show."""
        now = time.monotonic()
        ep = self._endpoints[index]
        down = now - ep.down_since if ep.down_since is not None else 0.0
        ep.healthy, ep.down_since, ep.up_since, ep.streak = True, None, now, 0
        url = self.base_urls[index]
        self._lock.notify_all()
        if self._outage_since is not None:
            waited = now - self._outage_since
            self._outage_since = None
            return [
                f"{url} answers again after {down:.0f} s down; continuing (waited {waited:.0f} s)"
            ]
        return [f"{url} answers again after {down:.0f} s down; back in rotation"]

    def _acquire(self) -> tuple[int, float]:
        """(a server in rotation, seconds spent waiting for one).

        With none in rotation: waits while the fleet is waited for (raising `OutageError`
        when the outage deadline passes), else returns the next URL anyway (a URL that never
        answered gets retries with backoff, not a wait).
        """
        started = time.monotonic()
        while True:
            lines: list[str] = []
            with self._lock:
                index, wait = self._try_acquire(lines)
                if index is not None:
                    return index, time.monotonic() - started
                if wait > 0:
                    self._lock.wait(wait)
            self._emit(lines)

    def _try_acquire(
        self, lines: list[str], room: Callable[[int], float] | None = None
    ) -> tuple[int | None, float]:
        """One look at the rotation (lock held): (a server, 0), or (None, how long to wait
        before looking again) while the fleet is waited for; notices go to `lines`. With
        `room`, the server in rotation with the most room is taken (ties in turn)."""
        if self._closed.is_set():
            raise BackendError("The HTTP backend was closed while requests were pending")
        if room is not None:
            start, count = next(self._cycle), len(self.base_urls)
            order = [(start + k) % count for k in range(count)]
            healthy = [i for i in order if self._endpoints[i].healthy]
            if healthy:
                return max(healthy, key=room), 0.0
        for _ in range(len(self.base_urls)):
            index = next(self._cycle)
            if self._endpoints[index].healthy:
                return index, 0.0
        if not self._waits_for_outages():
            return next(self._cycle), 0.0
        now = time.monotonic()
        if self._outage_since is None:  # out of rotation before it ever answered
            self._outage_since = now
            self.outages += 1
        give_up = self._outage_since + self.outage_timeout_s
        if now >= give_up:
            raise self._outage_error(now)
        if now >= self._next_notice:
            self._next_notice = now + self.notice_every_s
            lines.append(self._waiting_line(now, give_up))
            return None, 0.0
        return None, min(1.0, give_up - now, self._next_notice - now)

    def _waiting_line(self, now: float, give_up: float) -> str:
        since = self._outage_since if self._outage_since is not None else now
        return (
            f"waiting for {', '.join(self.base_urls)} (down {now - since:.0f} s, "
            f"giving up in {max(0.0, give_up - now):.0f} s)"
        )

    def _outage_error(self, now: float) -> OutageError:
        """The error once the outage deadline has passed (lock held)."""
        down = []
        for url, ep in zip(self.base_urls, self._endpoints, strict=True):
            since = ep.down_since if ep.down_since is not None else now
            last = f"; last error: {ep.last_error}" if ep.last_error else ""
            down.append(f"{url} (down {now - since:.0f} s{last})")
        return OutageError(
            f"No server answered for {self.outage_timeout_s:g} s (outage_timeout_s): "
            + ", ".join(down),
            fix="The work finished so far is kept: start the server again (`curl "
            f"{self.base_urls[0]}/models` should answer) and rerun the same command to resume; "
            "raise outage_timeout_s to wait longer for restarts",
        )

    def _timeout(self, remaining: float) -> httpx.Timeout:
        """This attempt's timeouts: the configured ones, cut to what the deadline leaves."""
        read = min(self.read_timeout_s or remaining, remaining)
        return httpx.Timeout(read, connect=min(self.connect_timeout_s, remaining))

    @staticmethod
    def root(base_url: str) -> str:
        """The server root of a /v1 URL (vLLM's /tokenize and /health live there)."""
        return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        at_root: bool = False,
        url_index: int | None = None,
    ) -> Any:
        """Send one request, retrying transient failures until the deadline; returns the JSON.

        `url_index` pins the request to one base URL instead of the rotation (it then never
        waits for an outage: that is for the first contact).
        """
        deadline = time.monotonic() + self.timeout_s
        pinned = url_index is not None
        base = self.base_urls[url_index or 0]
        attempts, sent, last_error, url = 0, 0, "", base + path
        while True:
            if self._closed.is_set():
                raise BackendError("The HTTP backend was closed while requests were pending")
            if url_index is None:
                index, waited = self._acquire()
                deadline += waited  # waiting out an outage is not this request's time
            else:
                index = url_index
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if sent:
                self.retries += 1
            sent += 1
            base, url = self._target(index, path, at_root)
            sent_at = time.monotonic()
            try:
                response = self.client.request(
                    method, url, json=payload, timeout=self._timeout(remaining)
                )
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last_error = describe(err)
                counted, moved, fresh = self._after_transport_error(
                    index, last_error, pinned, sent_at, _failure_kind(err)
                )
                if fresh:
                    deadline = max(deadline, time.monotonic() + self.timeout_s)
            else:
                if response.status_code < 400:
                    self._succeeded(index, sent_at)
                    return response.json()
                message = error_text(response)
                last_error = f"HTTP {response.status_code}: {message}"
                counted, moved = self._after_status(
                    index, response.status_code, message, url, pinned, sent_at
                )
            if counted:
                attempts += 1
                if attempts > self.max_retries:
                    break
            if moved:
                continue  # its server is out of rotation: on at once to another (or wait)
            self._closed.wait(max(0.0, min(self._pause(attempts), deadline - time.monotonic())))
        raise self._gave_up(method, url, base, sent, last_error, deadline)

    async def arequest(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *,
        at_root: bool = False, tokens: int = 0,
    ) -> Any:  # fmt: skip
        """`request` behind the coroutine interface of `cai.backends.async_http`; it blocks
        (its callers run it in a thread of their own)."""
        return self.request(method, path, payload, at_root=at_root)

    def _target(self, index: int, path: str, at_root: bool) -> tuple[str, str]:
        """(base URL, full URL) of an attempt on server `index`."""
        base = self.base_urls[index]
        return base, (self.root(base) if at_root else base) + path

    def _pause(self, attempts: int) -> float:
        """The backoff before the next attempt of a request that failed `attempts` times."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1))

    def _after_transport_error(
        self, index: int, error: str, pinned: bool, sent_at: float, kind: str
    ) -> tuple[bool, bool, bool]:
        """A request to `index` got no answer: (it counts against max_retries, it moves on,
        it gets a fresh deadline). `kind` is "hard" (no connection), "timeout" (no answer in
        time), "pool" (our own connection limit) or "dropped"."""
        if self._closed.is_set():
            raise BackendError("The HTTP backend was closed while requests were pending")
        if kind == "pool":
            return True, False, False
        counted, moved = self._failed(index, error, kind == "hard", pinned, sent_at)
        # its time went to a server that is gone (a dead host answers nothing): the next
        # server gets a whole deadline
        return counted, moved, moved and kind == "timeout"

    def _after_status(
        self, index: int, status: int, message: str, url: str, pinned: bool, sent_at: float
    ) -> tuple[bool, bool]:
        """A request to `index` answered with an error status: (it counts, it moves on);
        raises for the caller's mistakes."""
        if status not in _RETRY_STATUS:
            self._succeeded(index, sent_at)  # alive and answering; the request is wrong
            raise_client_error(status, url, message)
        if status in _SERVER_DOWN_STATUS:
            return self._failed(index, f"HTTP {status}: {message}", False, pinned, sent_at)
        return True, False  # 429 and friends: busy, not broken

    def _gave_up(
        self, method: str, url: str, base: str, attempts: int, last_error: str, deadline: float
    ) -> ServerUnavailableError:
        """The error for a request that ran out of time or retries, naming what to check."""
        check = f"Check that the server is running and not overloaded (`curl {base}/models`)"
        if time.monotonic() >= deadline:
            return ServerTimeoutError(
                f"No answer to {method} {url} within the {self.timeout_s:g} s deadline "
                f"({attempts_text(attempts)}; last error: {last_error})",
                fix=f"{check}, or raise timeout_s for long generations",
            )
        return ServerUnavailableError(
            f"No answer to {method} {url} after {attempts_text(attempts)} (last error: {last_error})",
            fix=f"{check}, or raise max_retries",
        )

    # first contact ---------------------------------------------------------------------
    def discover(self) -> list[list[dict[str, Any]]]:
        """The models each base URL serves; fixes a base URL given without its `/v1`.

        Runs before any real work, so a URL with nothing listening fails at once with its
        address instead of being retried, and a bare `http://host:port` that answers 404 for
        `/models` is tried again with `/v1` appended (a log line says so).
        """
        models = []
        for index in range(len(self.base_urls)):
            models.append(self._discover_one(index))
            with self._lock:
                self._endpoints[index].answered = True  # from now on it is waited for
        return models

    def _discover_one(self, index: int) -> list[dict[str, Any]]:
        base = self.base_urls[index]
        status, body = self._probe(base + "/models")
        if status == 404 and not base.endswith("/v1"):
            fixed = base + "/v1"
            fixed_status, fixed_body = self._probe(fixed + "/models")
            if fixed_status == 200:
                log.warning("%s has no /models; using %s (add /v1 to the URL)", base, fixed)
                self.base_urls[index] = fixed
                return model_list(fixed, fixed_body)
        if status == 404 and base.endswith("/v1"):
            raise BackendError(
                f"{base}/models answered HTTP 404: no OpenAI-compatible API there",
                key="base_urls",
                fix="Check the host, port and path (`cai serve` answers at http://HOST:PORT/v1)",
            )
        if status == 404:
            raise BackendError(
                f"{base}/models answered HTTP 404 and so did {base}/v1/models: this is not the "
                "base URL of an OpenAI-compatible API",
                key="base_urls",
                fix="Give the URL that ends in /v1 (`cai serve` answers at http://HOST:PORT/v1)",
            )
        if status != 200:
            body = self.request("GET", "/models", url_index=index)  # e.g. 503 while starting
        return model_list(base, body)

    def _probe(self, url: str) -> tuple[int, Any]:
        """One GET with no retries: (status, JSON body or None); refused connections raise."""
        timeout = httpx.Timeout(
            min(self.read_timeout_s or self.timeout_s, self.timeout_s),
            connect=min(self.connect_timeout_s, self.timeout_s),
        )
        try:
            response = self.client.get(url, timeout=timeout)
        except httpx.ConnectError as err:
            raise ServerUnavailableError(
                f"Cannot connect to {url} ({err or 'connection refused'})",
                key="base_urls",
                fix="Is the server running (start one with `cai serve MODEL`), and are the host "
                "and port right?",
            ) from err
        except httpx.TimeoutException as err:
            raise ServerTimeoutError(
                f"No answer to GET {url} within {self.timeout_s:g} s ({type(err).__name__})",
                key="base_urls",
                fix="Check that the server is up and not overloaded, or raise timeout_s",
            ) from err
        except httpx.TransportError as err:
            raise ServerUnavailableError(
                f"GET {url} failed: {type(err).__name__}: {err}",
                key="base_urls",
                fix="Check the URL and that an OpenAI-compatible server answers there",
            ) from err
        if response.status_code in (401, 403):
            raise_client_error(response.status_code, url, error_text(response))
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    # probing -------------------------------------------------------------------------------
    def _probe_once(self, index: int) -> bool:
        """One GET /models to a server out of rotation; puts it back when it answers."""
        url = self.base_urls[index] + "/models"
        timeout = httpx.Timeout(
            min(self.read_timeout_s or 10.0, 10.0), connect=min(self.connect_timeout_s, 10.0)
        )
        try:
            status = self.client.get(url, timeout=timeout).status_code
        except (httpx.HTTPError, RuntimeError) as err:  # RuntimeError: closed under our feet
            with self._lock:
                self._endpoints[index].last_error = describe(err)
            return False
        if status in _RETRY_STATUS:  # listening, not ready yet (e.g. 503 while loading)
            with self._lock:
                self._endpoints[index].last_error = f"HTTP {status} from GET {url}"
            return False
        lines: list[str] = []
        with self._lock:
            ep = self._endpoints[index]
            ep.probing = False
            if not ep.healthy:
                lines = self._back_in(index)
        self._emit(lines)
        return True

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._lock.notify_all()
        self.client.close()


def _probe_until_back(pool_ref: weakref.ref[HttpPool], index: int, delay: float) -> None:
    """Probe server `index` with backoff until it answers, its pool closes or is dropped.

    Holds the pool only weakly between probes, so a pool nobody closed does not live on.
    """
    pool = pool_ref()
    if pool is None:
        return
    closed = pool._closed
    del pool
    while not closed.wait(delay):
        pool = pool_ref()
        if pool is None or pool._probe_once(index):
            return
        delay = min(delay * 2, pool.max_probe_interval_s)
        del pool


def _failure_kind(err: httpx.HTTPError) -> str:
    if isinstance(err, httpx.PoolTimeout):
        return "pool"
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
        return "hard"
    if isinstance(err, httpx.ReadTimeout | httpx.WriteTimeout):
        return "timeout"
    return "dropped"
