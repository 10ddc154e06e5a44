"""What the HTTP client raises, and how it words a server's answers and failures."""

from __future__ import annotations

import json
from typing import Any

import httpx

from cai.backends.base import BackendError, ContextOverflowError

_OVERFLOW_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


class ServerUnavailableError(BackendError):
    """No server answered after every retry."""


class ServerTimeoutError(ServerUnavailableError):
    """A request got no answer within its total deadline."""


class OutageError(ServerUnavailableError):
    """Every server stayed out of rotation for longer than the outage deadline."""


class RequestRejectedError(BackendError):
    """The server answered with a client error (bad model name, bad parameters, bad key)."""


def error_text(response: httpx.Response) -> str:
    """The message of an error answer, from its JSON `error` where it has one."""
    return body_message(response.content)


def body_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return " ".join(body.decode("utf-8", "replace").split())[:300]
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(parsed)[:1000]


def describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def attempts_text(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


def raise_client_error(status: int, url: str, message: str) -> None:
    """Raise what a 4xx answer means: the context is too long, the key is wrong, or the
    request is."""
    lowered = message.lower()
    if status == 400 and any(hint in lowered for hint in _OVERFLOW_HINTS):
        raise ContextOverflowError(f"{url}: {message}")
    if status in (401, 403):
        raise RequestRejectedError(
            f"{url} refused the API key (HTTP {status}): {message}",
            fix="Set the key in the environment variable named by api_key_env",
        )
    raise RequestRejectedError(f"{url} rejected the request (HTTP {status}): {message}")


def model_list(url: str, body: Any) -> list[dict[str, Any]]:
    """The `data` list of a /models answer, or an error saying the server is not OpenAI's API."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise BackendError(
            f"{url}/models did not answer with an OpenAI model list",
            key="base_urls",
            fix="Give the /v1 URL of an OpenAI-compatible server (such as `cai serve`)",
        )
    return [m for m in data if isinstance(m, dict)]
