"""Prompts from any table: rows holding either a text column (one user turn) or a
conversational `messages` column, checked row by row so a bad one fails before any model
loads, naming its file, row, line and column (or message index)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.records import PromptRecord, stable_id
from cai.tables.json_files import json_kind, json_messages
from cai.tables.read import iter_rows
from cai.tables.rows import InputFormatError, RowError, TableRow

TEXT_COLUMNS = ("prompt", "text", "instruction", "question", "input")
MESSAGE_COLUMNS = ("messages", "conversation", "prompt")
ROLES = ("system", "user", "assistant")


def _fail(
    path: Path, record: TableRow, message: str, key: str | None = None, fix: str | None = None
) -> InputFormatError:
    return InputFormatError(message, file=path, row=record.row, line=record.line, key=key, fix=fix)


def _message(item: Any, key: str, path: Path, record: TableRow) -> dict[str, str]:
    """One checked {'role', 'content'} message."""
    if not isinstance(item, dict):
        raise _fail(path, record, f"a message must be an object, got {json_kind(item)}", key)
    role = item.get("role")
    if role not in ROLES:
        got = "has no role" if role is None else f"has role {role!r}"
        raise _fail(
            path, record, f"the message {got}", f"{key}.role", f"Use one of {', '.join(ROLES)}."
        )
    content = item.get("content")
    if content is None:
        raise _fail(path, record, "the message has no content", f"{key}.content")
    if not isinstance(content, str):
        raise _fail(
            path,
            record,
            f"the message content must be text, got {json_kind(content)}",
            f"{key}.content",
        )
    return {"role": role, "content": content}


def _conversation(
    value: list[Any], column: str, path: Path, record: TableRow
) -> list[dict[str, str]]:
    """Checked messages, ending at the last user turn (trailing answers are dropped)."""
    messages = [_message(m, f"{column}[{i}]", path, record) for i, m in enumerate(value)]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()  # a prompt ends at the last user turn
    if not messages or messages[-1]["role"] != "user":
        raise _fail(path, record, "the conversation has no user turn to answer", column)
    if not messages[-1]["content"].strip():
        raise _fail(path, record, "the last user turn is empty", column)
    return messages


def _prompt_column(row: dict[str, Any], column: str | None, path: Path, record: TableRow) -> str:
    if column is not None:
        if column not in row:
            raise _fail(path, record, f"no column {column!r} (columns: {', '.join(map(str, row))})")
        return column
    for candidate in (*MESSAGE_COLUMNS, *TEXT_COLUMNS):
        if candidate in row:
            return candidate
    names = ", ".join(dict.fromkeys(MESSAGE_COLUMNS + TEXT_COLUMNS))
    raise _fail(
        path,
        record,
        f"no prompt column found (columns: {', '.join(map(str, row)) or 'none'})",
        fix=f"Name one with --prompt-column, or use one of: {names}.",
    )


def _to_messages(
    row: dict[str, Any], column: str | None, path: Path, record: TableRow
) -> list[dict[str, str]]:
    name = _prompt_column(row, column, path, record)
    value = row[name]
    if isinstance(value, str):
        decoded = json_messages(value) if name in MESSAGE_COLUMNS else None
        if decoded is not None:
            return _conversation(decoded, name, path, record)
        if not value.strip():
            raise _fail(path, record, "the prompt is empty", name)
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value:
        return _conversation(value, name, path, record)
    raise _fail(
        path,
        record,
        f"the prompt must be text or a list of {{'role', 'content'}} messages, got "
        f"{'an empty list' if value == [] else json_kind(value)}",
        name,
    )


def _prompts(path: Path, column: str | None, limit: int | None) -> Iterator[PromptRecord]:
    empty = True
    for record in iter_rows(path):
        empty = False
        if limit is not None and record.row > limit:
            return
        if isinstance(record.data, RowError):
            raise record.data
        messages = _to_messages(record.data, column, path, record)
        prompt_id = record.data.get("id") or record.data.get("prompt_id") or stable_id(messages)
        yield PromptRecord(prompt_id=str(prompt_id), prompt=messages)
    if empty:
        raise InputFormatError(
            "the file is empty: it holds no prompts",
            file=path,
            fix='Add prompts, one per row (e.g. a JSONL line {"prompt": "..."}), or fix the path.',
        )


def iter_prompts(
    path: str | Path, column: str | None = None, limit: int | None = None
) -> Iterator[PromptRecord]:
    """Stream prompts in file order; ids are content hashes, so they are stable across runs.

    The first bad row raises an `InputFormatError` naming the file, row, line and column (or
    message index); so does a file with no rows. Call `count_prompts` first to check every
    row before any model work starts.
    """
    return _prompts(Path(path), column, limit)


def count_prompts(path: str | Path, column: str | None = None, limit: int | None = None) -> int:
    """Read every prompt once (at most `limit`) and return how many there are: a check to
    run before sampling, so a bad row late in the file fails before any model loads."""
    return sum(1 for _ in iter_prompts(path, column, limit))
