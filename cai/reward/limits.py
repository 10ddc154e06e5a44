"""What the reward service admits: who (bearer tokens), how often (per token), how much.

A judge engine is a shared, finite thing; one trainer that floods it starves the others. So
each client token (or, without tokens, each client address) has a token bucket of requests,
and every request is bounded in bytes, items and group size before anything is parsed
further. Each refusal is a 4xx with one line of JSON saying which limit and how to stay in it.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class ServiceLimits(BaseModel):
    """The service's limits; each has a `cai reward serve` flag of the same name."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(default_factory=list)
    """Bearer tokens a client must send (`Authorization: Bearer KEY`); empty = open."""
    rate_limit: float | None = Field(None, gt=0)
    """Requests per second per client token (per address without tokens); None = no limit."""
    burst: int = Field(32, ge=1)
    """Requests a client may send at once before the rate applies."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_items: int = Field(1024, ge=1)
    """Items (or groups) per request."""
    max_group_size: int = Field(64, ge=2)
    """Responses per /v1/rank group (a group of k is k(k-1)/2 judged pairs)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class RateLimiter:
    """A token bucket per client: `rate` requests per second, up to `burst` at once."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, client: str) -> float:
        """0.0 when the request may go now (and it is counted), else seconds to wait."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.setdefault(client, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header; None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def known_key(token: str | None, keys: list[str]) -> bool:
    """Whether `token` is one of `keys` (compared in constant time)."""
    if token is None:
        return False
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)
