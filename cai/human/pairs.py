"""Pair identity and the small conversions every human-label module needs.

A pair is (prompt, {response_1, response_2}); its key is
`stable_id(prompt, sorted([response_1, response_2]))`, the same id the AI labeler writes
as `pair_id`, so the key never depends on which response was chosen or shown first.
"""

from __future__ import annotations

from typing import Any

from cai import records
from cai.backends.base import Message
from cai.errors import InputError
from cai.tables import ROLES, json_messages


class PairDataError(InputError):
    """A value cannot be read as a prompt or a response."""


def prompt_messages(prompt: Any) -> list[Message]:
    """A prompt as chat messages: a plain string is one user turn; a JSON string of messages
    (as a CSV cell holds them) is decoded; messages keep only role and content."""
    if isinstance(prompt, str):
        decoded = json_messages(prompt)
        if decoded is not None:
            return prompt_messages(decoded)
        if not prompt.strip():
            raise PairDataError("the prompt is empty")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt:
        messages = [_prompt_message(i, message) for i, message in enumerate(prompt)]
        if messages[-1]["role"] != "user":
            raise PairDataError("the prompt must end with a user turn")
        return messages
    raise PairDataError(
        "the prompt must be a non-empty string or a list of {'role', 'content'} messages "
        f"(got {type(prompt).__name__})"
    )


def _prompt_message(index: int, message: Any) -> Message:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise PairDataError(
            f"prompt message {index} must be an object with 'role' and 'content' "
            f"(got {str(message)[:80]!r})"
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise PairDataError(
            f"prompt message {index} has role {role!r}; use one of {', '.join(ROLES)}"
        )
    if not isinstance(content, str):
        raise PairDataError(
            f"prompt message {index} content must be text (got {type(content).__name__})"
        )
    return {"role": role, "content": content}


def response_text(response: Any) -> str:
    """The text of a response: a string, or a list holding one assistant message."""
    if isinstance(response, str):
        return response
    if isinstance(response, list) and response:
        last = response[-1]
        if len(response) == 1 and isinstance(last, dict) and last.get("role") == "assistant":
            content = last.get("content")
            if not isinstance(content, str):
                raise PairDataError(
                    f"a response's content must be text (got {type(content).__name__})"
                )
            return content
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
    """Fail early, naming the dataset (`name`: its path or role) and row, when a dataset is
    not preference rows."""
    for number, row in enumerate(rows, 1):
        missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None]
        if missing:
            raise PairDataError(
                f"missing {', '.join(missing)}",
                file=name,
                row=number,
                fix=f"A preference dataset needs {', '.join(REQUIRED_COLUMNS)}; bring human "
                "labels in with `cai import-human`.",
            )
        try:
            row_key(row)
            p = float(row["prob_chosen"])
        except PairDataError as err:
            raise PairDataError(err.message, file=name, row=number) from None
        except (TypeError, ValueError, OverflowError):
            p = None
        if p is None or not 0.0 <= p <= 1.0:
            raise PairDataError(
                f"prob_chosen={row['prob_chosen']!r} is not a probability in [0, 1]",
                file=name,
                row=number,
                key="prob_chosen",
            )
