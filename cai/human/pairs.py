"""Pair identity and the small conversions every human-label module needs.

A pair is (prompt, {response_1, response_2}); its key is
`stable_id(prompt, sorted([response_1, response_2]))`, the same id the AI labeler writes
as `pair_id`, so the key never depends on which response was chosen or shown first.
"""

from __future__ import annotations

import json
from typing import Any

from cai import records
from cai.backends.base import Message
from cai.errors import CaiError

ROLES = ("system", "user", "assistant")


class PairDataError(CaiError, ValueError):
    """A value cannot be read as a prompt or a response."""


def prompt_messages(prompt: Any) -> list[Message]:
    """A prompt as chat messages: a plain string is one user turn; a JSON string of messages
    (as a CSV cell holds them) is decoded; messages keep only role and content."""
    if isinstance(prompt, str):
        text = prompt.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, list) and decoded and all(isinstance(m, dict) for m in decoded):
                return prompt_messages(decoded)
        if not text:
            raise PairDataError("the prompt is empty")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt:
        messages = []
        for message in prompt:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise PairDataError(
                    "a prompt message must be an object with 'role' and 'content' "
                    f"(got {str(message)[:80]!r})"
                )
            role = str(message["role"])
            if role not in ROLES:
                raise PairDataError(f"unknown message role {role!r} (use one of {ROLES})")
            messages.append({"role": role, "content": str(message["content"] or "")})
        if messages[-1]["role"] != "user":
            raise PairDataError("the prompt must end with a user turn")
        return messages
    raise PairDataError(
        "the prompt must be a non-empty string or a list of {'role', 'content'} messages "
        f"(got {type(prompt).__name__})"
    )


def response_text(response: Any) -> str:
    """The text of a response: a string, or a list holding one assistant message."""
    if isinstance(response, str):
        return response
    if isinstance(response, list) and response:
        last = response[-1]
        if len(response) == 1 and isinstance(last, dict) and last.get("role") == "assistant":
            return str(last.get("content") or "")
        raise PairDataError(
            "a response must be a list holding exactly one assistant message "
            f"(got {len(response)} message(s))"
        )
    raise PairDataError(
        f"a response must be a string or one assistant message (got {type(response).__name__})"
    )


def assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def pair_key(prompt: Any, a: str, b: str) -> str:
    """Order-insensitive id of the pair: `stable_id(prompt, sorted([a, b]))`."""
    return records.pair_key(prompt_messages(prompt), a, b)


def row_key(row: dict[str, Any]) -> str:
    """The pair key of a preference row, recomputed from its content (stored ids may be stale)."""
    return pair_key(row["prompt"], response_text(row["chosen"]), response_text(row["rejected"]))


def prob_first(row: dict[str, Any]) -> float:
    """Probability that the alphabetically first response of the pair wins: an orientation
    that does not depend on which response a source called `chosen`."""
    chosen, rejected = response_text(row["chosen"]), response_text(row["rejected"])
    p = float(row["prob_chosen"])
    return p if chosen <= rejected else 1.0 - p


def render_conversation(messages: list[Message]) -> str:
    """Readable text of a conversation for people who label."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


REQUIRED_COLUMNS = ("prompt", "chosen", "rejected", "prob_chosen")


def check_preference_rows(rows: list[dict[str, Any]], name: str) -> None:
    """Fail early, naming the row, when a dataset is not preference rows."""
    for number, row in enumerate(rows, 1):
        missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None]
        if missing:
            raise PairDataError(
                f"{name} row {number}: missing {', '.join(missing)}. A preference dataset needs "
                f"{', '.join(REQUIRED_COLUMNS)}; bring human labels in with `cai import-human`."
            )
        try:
            row_key(row)
            float(row["prob_chosen"])
        except (PairDataError, TypeError, ValueError) as err:
            raise PairDataError(f"{name} row {number}: {err}") from None
