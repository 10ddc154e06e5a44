"""Admission to one endpoint: an adaptive in-flight window, rate limits, and `Retry-After`.

A vLLM server answers fastest with its batch full but not overfull, and an API provider
refuses (HTTP 429) whatever goes over its requests-per-minute or tokens-per-minute cap. Each
endpoint of a fleet gets one `EndpointGate`, used on the client's event loop (no locks):

- the window of requests in flight grows (one more per answer until the first sign of
  congestion, then one more per window's worth of answers) and shrinks by half on 429, 503
  or a timeout, and by a fifth when the latency climbs past `latency_tolerance` times the
  least-loaded one while the answers per second fall two rounds in a row (one round's drop
  is as often the machine's noise as the server's load, and a vLLM server queues what it
  cannot batch yet, so a window a little too large costs little);
- requests and tokens per minute are paced by token buckets that hold at most one second's
  worth, so the client never sends a burst that a provider's 60 s window would refuse;
- a `Retry-After` (or, without one, the retry's backoff) pauses the whole endpoint, not only
  the request that got it: the others would be refused too;
- told no requests-per-minute cap, an endpoint that answers 429 gets one learned from it: the
  rate it accepted over the last seconds, less a tenth, cut by a fifth at each later 429 and
  raised by a twentieth every `_PROBE_S` seconds without one. A window of requests in flight
  cannot hold a rate: with quick answers even one request at a time outruns a provider's cap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from cai.errors import CaiError

_RECENT_S = 60.0  # how far back the accepted rate is read when a 429 teaches one (a
# provider's window is a minute)
_PROBE_S = 5.0  # seconds without a 429 before a learned rate is raised


@dataclass(frozen=True)
class EndpointLimits:
    """What one endpoint accepts: at most `max_in_flight` at once (the adaptive window's
    ceiling; `adaptive=False` keeps it there), and the provider's caps per minute."""

    max_in_flight: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    adaptive: bool = True
    latency_tolerance: float = 3.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise CaiError(
                f"max_in_flight is {self.max_in_flight}; an endpoint needs room for one request",
                fix="Set max_in_flight (or max_concurrency) to 1 or more",
            )
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise CaiError(f"{name} is {value}", fix=f"Set {name} above 0, or leave it unset")


class _Bucket:
    """A token bucket refilled at `per_minute / 60` per second, holding one second's worth."""

    def __init__(self, per_minute: float | None) -> None:
        self.rate = None if per_minute is None else per_minute / 60.0
        self.capacity = 0.0 if self.rate is None else max(1.0, self.rate)
        self.level = min(1.0, self.capacity)  # no burst at the start: a provider's window
        self.stamp = time.monotonic()

    def wait(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken (0: now)."""
        if self.rate is None:
            return 0.0
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(
            amount, self.capacity
        )  # a request bigger than a second's worth waits for a full bucket
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        if self.rate is not None:
            self.level -= min(amount, self.capacity)

    def settle(self, extra: float) -> None:
        """Charge what a request used beyond its estimate (or refund what it did not)."""
        if self.rate is not None:
            self.level = min(self.capacity, self.level - extra)


class EndpointGate:
    """The window, buckets and pause of one endpoint, and what they cost (see `stats`)."""

    def __init__(self, limits: EndpointLimits) -> None:
        self.limits = limits
        self.window = float(
            limits.max_in_flight if not limits.adaptive else min(4, limits.max_in_flight)
        )
        self.in_flight = 0
        self.paused_until = 0.0
        self._slow_start = limits.adaptive
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._requests = _Bucket(limits.requests_per_minute)
        self._tokens = _Bucket(limits.tokens_per_minute)
        self._best_latency: float | None = None
        self._latency: float | None = None  # moving average
        self._last_cut = 0.0
        self._round_answers = 0
        self._round_start = time.monotonic()
        self._round_rate: float | None = None
        self._slow_rounds = 0
        self._answered: deque[float] = deque()  # times of recent answers (a learned rate)
        self._learned: float | None = None  # requests per second learned from 429s
        self._last_throttle = 0.0
        self.admitted = 0
        self.throttled = 0  # answers 429 / 503
        self.queued_s = 0.0
        self.peak_window = self.window

    async def enter(self, tokens: int = 0) -> float:
        """Wait for room (window, buckets, pause) and take it; the seconds spent waiting."""
        started = time.monotonic()
        if self.in_flight == 0 and not self._waiters:
            # idle until now: a round of answers that spans the pause would read as a drop
            self._round_answers, self._round_start, self._round_rate = 0, started, None
        while True:
            now = time.monotonic()
            wait = self.paused_until - now
            if wait <= 0 and self.in_flight < int(self.window):
                wait = max(self._requests.wait(1, now), self._tokens.wait(tokens, now))
                if wait <= 0:
                    self._requests.take(1)
                    self._tokens.take(tokens)
                    self.in_flight += 1
                    self.admitted += 1
                    queued = now - started
                    self.queued_s += queued
                    return queued
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

    def leave(
        self,
        latency: float | None,
        outcome: str,
        retry_after: float | None = None,
        used: int | None = None,
        estimate: int = 0,
    ) -> None:
        """A request admitted by `enter` ended: `outcome` is "ok", "throttled" (429, 503),
        "timeout" or "failed" (another error, which says nothing about the load); `used`,
        the tokens the server counted, corrects the estimate `enter` took."""
        self.in_flight -= 1
        if used is not None:
            self._tokens.settle(used - estimate)
        now = time.monotonic()
        if outcome == "throttled" or outcome == "timeout":
            self._cut(now, 0.5)
            if retry_after is not None:
                self.paused_until = max(self.paused_until, now + retry_after)
            if outcome == "throttled":
                self.throttled += 1
                self._learn_rate(now, retry_after)
        elif outcome == "ok" and latency is not None:
            self._on_answer(latency, now)
        self._wake()

    def _learn_rate(self, now: float, retry_after: float | None) -> None:
        """A 429 without a configured requests-per-minute cap: pace to what the endpoint
        accepted lately spread over that time and the wait it asked for (a provider that took
        N requests in s seconds and says to retry in r takes about N / (s + r) a second),
        less a tenth; cut by a fifth at each later 429 outside the pause it asked for (the
        answers already on their way were sent before it)."""
        if self.limits.requests_per_minute is not None or now < self._last_throttle:
            return
        recent = [t for t in self._answered if t >= now - _RECENT_S]
        span = (now - recent[0] if recent else 0.0) + (retry_after or 0.0)
        accepted = len(recent) / span if span > 0 and recent else 1.0
        rate = 0.9 * accepted if self._learned is None else 0.8 * min(self._learned, accepted)
        self._set_rate(max(rate, 1.0 / 60.0))
        self._last_throttle = max(now, self.paused_until)

    def _set_rate(self, per_second: float) -> None:
        self._learned = per_second
        level = self._requests.level if self._requests.rate is not None else 0.0
        self._requests = _Bucket(per_second * 60.0)
        self._requests.level = min(level, self._requests.capacity)

    def _on_answer(self, latency: float, now: float) -> None:
        if self.limits.requests_per_minute is None:
            self._answered.append(now)
            while self._answered and self._answered[0] < now - _RECENT_S:
                self._answered.popleft()
            if self._learned is not None and now - self._last_throttle > _PROBE_S:
                self._set_rate(self._learned * 1.05)
                self._last_throttle = now
        self._latency = latency if self._latency is None else 0.8 * self._latency + 0.2 * latency
        if self._best_latency is None or self._latency < self._best_latency:
            self._best_latency = self._latency
        if not self.limits.adaptive:
            return
        if self._congested(now):
            self._slow_rounds += 1
            if self._slow_rounds >= 2:
                self._slow_rounds = 0
                self._cut(now, 0.8)
        elif self.window < self.limits.max_in_flight and self.in_flight + 1 >= int(self.window):
            step = 1.0 if self._slow_start else 1.0 / self.window  # grow only when it is full
            self.window = min(float(self.limits.max_in_flight), self.window + step)
            self.peak_window = max(self.peak_window, self.window)

    def _congested(self, now: float) -> bool:
        """Once per window's worth of answers: the latency climbed past the tolerance and the
        answers per second fell (by a tenth: less is noise on a shared machine). A batching
        server answers each request later when its batch is fuller, and that is worth it
        while it answers as much or more in all."""
        self._round_answers += 1
        if self._round_answers < max(1, int(self.window)):
            return False
        rate = self._round_answers / max(1e-6, now - self._round_start)
        previous, self._round_rate = self._round_rate, rate
        self._round_answers, self._round_start = 0, now
        slow = self._latency > self.limits.latency_tolerance * self._best_latency + 0.05
        congested = slow and previous is not None and rate < 0.9 * previous
        if not congested:
            self._slow_rounds = 0
        return congested

    def _cut(self, now: float, factor: float) -> None:
        """Shrink the window, at most once per round trip (the answers already on their way
        were sent under the old window)."""
        self._slow_start = False
        if not self.limits.adaptive or now - self._last_cut < (self._latency or 0.0):
            return
        self._last_cut = now
        self.window = max(1.0, self.window * factor)

    def _wake(self) -> None:
        room = max(1, int(self.window) - self.in_flight)
        while self._waiters and room > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def room(self) -> float:
        """Requests this endpoint takes before its window is full (negative: queued ones)."""
        return int(self.window) - self.in_flight - len(self._waiters)

    def stats(self) -> dict[str, float | int]:
        """The window now and at its peak, requests admitted and throttled, and queueing."""
        return {
            "concurrency": int(self.window),
            "peak_concurrency": int(self.peak_window),
            "requests": self.admitted,
            "throttled": self.throttled,
            "queued_s": round(self.queued_s, 3),
            "mean_queue_ms": round(1000 * self.queued_s / max(1, self.admitted), 2),
            "latency_ms": round(1000 * (self._latency or 0.0), 2),
            **({"learned_rpm": round(self._learned * 60.0, 1)} if self._learned else {}),
        }


_SETTINGS = {
    "max_concurrency": "max_in_flight",
    "requests_per_minute": "requests_per_minute",
    "tokens_per_minute": "tokens_per_minute",
    "adaptive_concurrency": "adaptive",
}


def endpoint_limits(spec: Any) -> list[EndpointLimits]:
    """Each base URL's limits from an openai backend spec: its settings, with the
    `endpoint_limits` entry of that URL (same names) on top."""
    base = {name: getattr(spec, name) for name in _SETTINGS}
    urls = [u.rstrip("/") for u in spec.base_urls]
    overrides = {u.rstrip("/"): v for u, v in spec.endpoint_limits.items()}
    unknown = sorted(set(overrides) - set(urls))
    if unknown:
        raise CaiError(
            f"endpoint_limits names {unknown}, which are not among base_urls {urls}",
            fix="Key endpoint_limits by the base URLs exactly as base_urls gives them",
        )
    limits = []
    for url in urls:
        settings = {**base, **overrides.get(url, {})}
        wrong = sorted(set(settings) - set(_SETTINGS))
        if wrong:
            raise CaiError(
                f"endpoint_limits for {url} has unknown settings {wrong}",
                fix=f"Use {', '.join(_SETTINGS)}",
            )
        limits.append(EndpointLimits(**{_SETTINGS[k]: v for k, v in settings.items()}))
    return limits
