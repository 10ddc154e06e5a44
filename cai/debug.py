"""The debug switch: `cai --debug` (or `CAI_DEBUG=1`) shows tracebacks and live library logs.

It sits at the bottom so that any layer (error printing, log routing, executors) can ask
whether the user wants the details, without importing the command line.
"""

from __future__ import annotations

import os

_state = {"debug": False}


def set_debug(enabled: bool) -> None:
    _state["debug"] = enabled


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("CAI_DEBUG", "") not in ("", "0", "false")
