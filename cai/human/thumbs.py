"""Reading a thumbs up/down: the few clear spellings of "this answer is good / bad".

Single-answer feedback comes as `thumbs: up`, a 👍, a `true` or a `1`. Anything else ("maybe",
"3", "ok") is refused rather than guessed, and an empty cell means "not rated yet".
"""

from __future__ import annotations

import math
from typing import Any

from cai.errors import CaiError

UP_LABELS = frozenset({"up", "thumbs_up", "thumbsup", "👍", "true", "1", "desirable"})
DOWN_LABELS = frozenset({"down", "thumbs_down", "thumbsdown", "👎", "false", "0", "undesirable"})
SPELLINGS = "up / down, thumbs_up / thumbs_down, 👍 / 👎, true / false or 1 / 0"

# Emoji presentation selector and skin tones: "👍️" and "👍🏽" are still a thumbs up.
_EMOJI_MARKS = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])


class ThumbError(CaiError, ValueError):
    """A value that is not one of the thumbs spellings."""


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):  # an empty Parquet / pandas cell
        return True
    return isinstance(value, str) and not value.strip()


def parse_thumb(value: Any) -> bool | None:
    """True for a thumbs up, False for a thumbs down, None for an empty cell; ThumbError
    for anything else. Numbers count only as exactly 1 or 0."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise ThumbError(f"{value!r} is not a thumbs up/down; use {SPELLINGS}")
    text = str(value).translate(_EMOJI_MARKS).strip().lower()
    text = text.replace(" ", "_").replace("-", "_")
    if text in UP_LABELS:
        return True
    if text in DOWN_LABELS:
        return False
    shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
    raise ThumbError(f"{shown!r} is not a thumbs up/down; use {SPELLINGS}")
