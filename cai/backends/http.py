"""A small resilient HTTP client for OpenAI-compatible servers.

Several base URLs are used round-robin; a URL that refused a connection sits out for a short
cool-down while others are healthy. Timeouts, refused or dropped connections, 429 and 5xx
are retried with exponential backoff (the server may be restarting); other 4xx are the
caller's mistake and raise at once with the server's message.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx

from cai.backends.base import BackendError, ContextOverflowError

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_OVERFLOW_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


class ServerUnavailableError(BackendError):
    """No server answered after every retry."""


class RequestRejectedError(BackendError):
    """The server answered with a client error (bad model name, bad parameters, bad key)."""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:1000]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)[:1000]


class HttpPool:
    """POST/GET JSON against one of several base URLs with retries and backoff."""

    def __init__(
        self,
        base_urls: list[str],
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        cooldown_s: float = 2.0,
        max_connections: int = 16,
    ) -> None:
        if not base_urls:
            raise BackendError("No server URL given; pass at least one base URL ending in /v1.")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cooldown_s = cooldown_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections * 2),
        )
        self._cycle = itertools.cycle(range(len(self.base_urls)))
        self._down_until = [0.0] * len(self.base_urls)
        self._lock = threading.Lock()
        self.retries = 0
        self._closed = threading.Event()

    def _pick(self) -> int:
        with self._lock:
            now = time.monotonic()
            for _ in range(len(self.base_urls)):
                index = next(self._cycle)
                if self._down_until[index] <= now:
                    return index
            return next(self._cycle)

    def _mark_down(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + self.cooldown_s

    @staticmethod
    def root(base_url: str) -> str:
        """The server root of a /v1 URL (vLLM's /tokenize and /health live there)."""
        return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url

    def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, at_root: bool = False
    ) -> Any:
        """Send one request, retrying transient failures; returns the decoded JSON."""
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if self._closed.is_set():
                raise BackendError("The HTTP backend was closed while requests were pending.")
            index = self._pick()
            base = self.base_urls[index]
            url = (self.root(base) if at_root else base) + path
            try:
                response = self.client.request(method, url, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last_error = f"{type(err).__name__} from {url}: {err}"
                self._mark_down(index)
            else:
                if response.status_code < 400:
                    return response.json()
                message = _error_text(response)
                if response.status_code in _RETRY_STATUS:
                    last_error = f"HTTP {response.status_code} from {url}: {message}"
                else:
                    self._raise_client_error(response.status_code, url, message)
            if attempt < self.max_retries:
                self.retries += 1
                self._closed.wait(min(self.max_backoff_s, self.backoff_s * 2**attempt))
        raise ServerUnavailableError(
            f"No answer from {', '.join(self.base_urls)} after {self.max_retries + 1} attempts; "
            f"last error: {last_error}. Is the server running (`cai serve MODEL`) and is the "
            "URL right (it ends in /v1)?"
        )

    @staticmethod
    def _raise_client_error(status: int, url: str, message: str) -> None:
        lowered = message.lower()
        if status == 400 and any(hint in lowered for hint in _OVERFLOW_HINTS):
            raise ContextOverflowError(f"{url}: {message}")
        if status in (401, 403):
            raise RequestRejectedError(
                f"{url} refused the API key (HTTP {status}): {message}. Set the key in the "
                "environment variable named by api_key_env."
            )
        raise RequestRejectedError(f"{url} rejected the request (HTTP {status}): {message}")

    def close(self) -> None:
        self._closed.set()
        self.client.close()
