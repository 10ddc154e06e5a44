"""A small resilient HTTP client for OpenAI-compatible servers.

Several base URLs are used round-robin; a URL that refused a connection sits out for a short
cool-down while others are healthy. Timeouts, refused or dropped connections, 429 and 5xx
are retried with exponential backoff (the server may be restarting); other 4xx are the
caller's mistake and raise at once with the server's message.

Every request has a total deadline (`timeout_s`) across all its attempts and backoff
sleeps, so a server that never answers is reported after about `timeout_s`, not after
retries x timeout. Inside it, connecting may take `connect_timeout_s` (a few seconds: a live
server accepts at once) and each attempt may wait `read_timeout_s` for the answer.

`discover` is the first contact: it fails fast (no retries) on a URL nobody listens on, and
finds the OpenAI routes under `/v1` when the user gave the bare server address.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import httpx

from cai.backends.base import BackendError, ContextOverflowError

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_OVERFLOW_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


class ServerUnavailableError(BackendError):
    """No server answered after every retry."""


class ServerTimeoutError(ServerUnavailableError):
    """A request got no answer within its total deadline."""


class RequestRejectedError(BackendError):
    """The server answered with a client error (bad model name, bad parameters, bad key)."""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)[:1000]


class HttpPool:
    """GET/POST JSON against one of several base URLs with retries, backoff and a deadline."""

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
        connect_timeout_s: float = 5.0,
        read_timeout_s: float | None = None,
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
        self.cooldown_s = cooldown_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers, limits=httpx.Limits(max_connections=max_connections * 2)
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

        `url_index` pins the request to one base URL instead of the round-robin.
        """
        deadline = time.monotonic() + self.timeout_s
        base = self.base_urls[url_index or 0]
        attempts, last_error, url = 0, "", base + path
        while attempts <= self.max_retries:
            if self._closed.is_set():
                raise BackendError("The HTTP backend was closed while requests were pending")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if attempts:
                self.retries += 1
            attempts += 1
            index = self._pick() if url_index is None else url_index
            base = self.base_urls[index]
            url = (self.root(base) if at_root else base) + path
            try:
                response = self.client.request(
                    method, url, json=payload, timeout=self._timeout(remaining)
                )
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last_error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                self._mark_down(index)
            else:
                if response.status_code < 400:
                    return response.json()
                message = _error_text(response)
                if response.status_code not in _RETRY_STATUS:
                    self._raise_client_error(response.status_code, url, message)
                last_error = f"HTTP {response.status_code}: {message}"
            if attempts <= self.max_retries:
                pause = min(self.max_backoff_s, self.backoff_s * 2 ** (attempts - 1))
                self._closed.wait(max(0.0, min(pause, deadline - time.monotonic())))
        raise self._gave_up(method, url, base, attempts, last_error, deadline)

    def _gave_up(
        self, method: str, url: str, base: str, attempts: int, last_error: str, deadline: float
    ) -> ServerUnavailableError:
        """The error for a request that ran out of time or retries, naming what to check."""
        check = f"Check that the server is running and not overloaded (`curl {base}/models`)"
        if time.monotonic() >= deadline:
            return ServerTimeoutError(
                f"No answer to {method} {url} within the {self.timeout_s:g} s deadline "
                f"({_attempts(attempts)}; last error: {last_error})",
                fix=f"{check}, or raise timeout_s for long generations",
            )
        return ServerUnavailableError(
            f"No answer to {method} {url} after {_attempts(attempts)} (last error: {last_error})",
            fix=f"{check}, or raise max_retries",
        )

    @staticmethod
    def _raise_client_error(status: int, url: str, message: str) -> None:
        lowered = message.lower()
        if status == 400 and any(hint in lowered for hint in _OVERFLOW_HINTS):
            raise ContextOverflowError(f"{url}: {message}")
        if status in (401, 403):
            raise RequestRejectedError(
                f"{url} refused the API key (HTTP {status}): {message}",
                fix="Set the key in the environment variable named by api_key_env",
            )
        raise RequestRejectedError(f"{url} rejected the request (HTTP {status}): {message}")

    # first contact ---------------------------------------------------------------------
    def discover(self) -> list[list[dict[str, Any]]]:
        """The models each base URL serves; fixes a base URL given without its `/v1`.

        Runs before any real work, so a URL with nothing listening fails at once with its
        address instead of being retried, and a bare `http://host:port` that answers 404 for
        `/models` is tried again with `/v1` appended (a log line says so).
        """
        return [self._discover_one(index) for index in range(len(self.base_urls))]

    def _discover_one(self, index: int) -> list[dict[str, Any]]:
        base = self.base_urls[index]
        status, body = self._probe(base + "/models")
        if status == 404 and not base.endswith("/v1"):
            fixed = base + "/v1"
            fixed_status, fixed_body = self._probe(fixed + "/models")
            if fixed_status == 200:
                log.warning("%s has no /models; using %s (add /v1 to the URL)", base, fixed)
                self.base_urls[index] = fixed
                return _model_list(fixed, fixed_body)
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
        return _model_list(base, body)

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
            self._raise_client_error(response.status_code, url, _error_text(response))
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        self._closed.set()
        self.client.close()


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


def _model_list(url: str, body: Any) -> list[dict[str, Any]]:
    """The `data` list of a /models answer, or an error saying the server is not OpenAI's API."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise BackendError(
            f"{url}/models did not answer with an OpenAI model list",
            key="base_urls",
            fix="Give the /v1 URL of an OpenAI-compatible server (such as `cai serve`)",
        )
    return [m for m in data if isinstance(m, dict)]
