"""Whether the Hugging Face Hub can be asked at all, decided in seconds.

The Hugging Face libraries retry an unreachable hub for half a minute or more before they give
up. cai asks once, with a short TCP connect to the hub's host, so a name that is neither a
local path nor an embedded model fails in seconds on a machine with no network, and
`HF_HUB_OFFLINE` is respected without a single connection attempt.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlsplit

_OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_PROBE_SECONDS = 3.0


def hub_offline() -> bool:
    """Whether the user told the Hugging Face libraries not to use the network."""
    flags = (os.environ.get(name, "") for name in _OFFLINE_FLAGS)
    return any(flag.strip().upper() in ("1", "ON", "YES", "TRUE") for flag in flags)


def hub_endpoint() -> str:
    """The hub the libraries would call (`HF_ENDPOINT`, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


@lru_cache(maxsize=8)
def _probe(endpoint: str) -> str | None:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_SECONDS):
            return None
    except OSError as err:
        return f"{host}:{port} cannot be reached ({err.strerror or type(err).__name__})"


def hub_unavailable() -> str | None:
    """Why the hub cannot be asked now (offline flag set, or its host unreachable), or None.

    The probe result is kept for the life of the process: one short connect, not one per name.
    """
    if hub_offline():
        return "HF_HUB_OFFLINE is set, so the hub is not asked"
    return _probe(hub_endpoint())
