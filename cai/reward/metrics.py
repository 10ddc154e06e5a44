"""The service's numbers in Prometheus' text format (`GET /metrics`).

Counters of requests (by endpoint and status), items and item errors, a latency histogram per
endpoint, the queue, the batches, the judge's tokens (from the token ledger), the call cache's
hits and misses, and the judge's health numbers over its recent pairs. Written by hand: the
format is a few lines of text and needs no client library.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PREFIX = "cai_reward"


class Histogram:
    """Cumulative buckets, sum and count of observed seconds."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Counters the request handlers update; `render` adds the live gauges it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.items: dict[str, int] = defaultdict(int)
        self.item_errors: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency[endpoint].observe(seconds)

    def answered(self, endpoint: str, items: int, error_kinds: Iterable[str]) -> None:
        with self._lock:
            self.items[endpoint] += items
            for kind in error_kinds:
                self.item_errors[(endpoint, kind)] += 1

    def render(self, gauges: dict[str, tuple[str, float | None]]) -> str:
        """The text exposition: the counters here and `gauges` (name -> (help, value))."""
        with self._lock:
            lines = _counter(
                "requests_total",
                "HTTP requests by endpoint and status.",
                {f'endpoint="{e}",status="{s}"': n for (e, s), n in sorted(self.requests.items())},
            )
            lines += _counter(
                "items_total",
                "Items (pairs, groups) answered, by endpoint.",
                {f'endpoint="{e}"': n for e, n in sorted(self.items.items())},
            )
            lines += _counter(
                "item_errors_total",
                "Items answered with an error, by kind.",
                {f'endpoint="{e}",kind="{k}"': n for (e, k), n in sorted(self.item_errors.items())},
            )
            lines += _histograms(self.latency)
        for name, (help_text, value) in gauges.items():
            if value is None:
                continue
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [
                f"# HELP {PREFIX}_{name} {help_text}",
                f"# TYPE {PREFIX}_{name} {kind}",
                f"{PREFIX}_{name} {_number(value)}",
            ]
        return "\n".join(lines) + "\n"


def _counter(name: str, help_text: str, samples: dict[str, int]) -> list[str]:
    lines = [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} counter"]
    lines += [f"{PREFIX}_{name}{{{labels}}} {value}" for labels, value in samples.items()]
    return lines


def _histograms(latency: dict[str, Histogram]) -> list[str]:
    name = f"{PREFIX}_request_seconds"
    lines = [f"# HELP {name} Request latency in seconds, by endpoint.", f"# TYPE {name} histogram"]
    for endpoint, hist in sorted(latency.items()):
        for bound, count in zip(hist.buckets, hist.counts, strict=True):
            lines.append(f'{name}_bucket{{endpoint="{endpoint}",le="{bound:g}"}} {count}')
        lines.append(f'{name}_bucket{{endpoint="{endpoint}",le="+Inf"}} {hist.count}')
        lines.append(f'{name}_sum{{endpoint="{endpoint}"}} {_number(hist.total)}')
        lines.append(f'{name}_count{{endpoint="{endpoint}"}} {hist.count}')
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
