"""JSON text: rows of JSON Lines and JSON array files, and JSON-encoded cells.

Every decode goes through `decode_json`, so each way `json` can fail (bad syntax, nesting
too deep, an integer too long to convert) becomes one message, and every decoded value is
checked by `json_value_problem` before anything hashes or stores it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.tables.rows import InputFormatError, RowError, TableRow
from cai.tables.text import (
    UTF8_BOM,
    UTF16_BOMS,
    TextLines,
    not_utf8,
    open_binary,
    raw_lines,
    utf16,
)

MAX_JSON_DEPTH = 100
"""Deeper JSON is refused when read: nothing cai reads nests more than a few levels, and
deeper values would overflow the recursion limit of json, pydantic or hashing later on."""

_ONE_OBJECT = 'Each line must be one JSON object, e.g. {"prompt": "..."}.'


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages ("string", "array", "null")."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else type(value).__name__


def json_value_problem(value: Any) -> str | None:
    """Why a decoded JSON value cannot be used (too deep, or text that is not valid Unicode:
    an unpaired surrogate escape such as "\\ud800" cannot be written or hashed)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:
                return (
                    f"a string holds an unpaired surrogate escape ({item[err.start]!r}), "
                    "which is not valid Unicode text"
                )
    return None


class _JsonError(ValueError):
    """Why a text is not JSON; `line` and `column` say where when known (1-based)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"not valid JSON ({reason})")
        self.line, self.column = line, column


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: JSON would keep only the last of a repeated
    key, so the row would silently mean something other than what was written."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _JsonError(f"key {repeated!r} is given twice in the same object")
    return value


def _decode_json(text: str) -> Any:
    """`json.loads` with every way it fails (bad syntax, a key given twice, too deep, an
    integer with more digits than Python converts) turned into a `_JsonError`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _JsonError:
        raise
    except json.JSONDecodeError as err:
        raise _JsonError(err.msg, err.lineno, err.colno) from None
    except RecursionError:
        raise _JsonError("nested too deeply to read") from None
    except ValueError as err:  # keep the reason, not Python's advice on raising the limit
        raise _JsonError(str(err).split(":")[0]) from None


def json_messages(text: str) -> list[Any] | None:
    """The list a JSON-encoded cell holds (how CSV stores a conversation), or None when the
    text is not a JSON list of objects."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        items = _decode_json(stripped)
    except _JsonError:
        return None
    if not (isinstance(items, list) and items and all(isinstance(m, dict) for m in items)):
        return None
    return None if json_value_problem(items) else items


def _json_row(text: str, path: Path, row: int, line: int) -> dict[str, Any] | RowError:
    """One JSON object from one line, or a RowError saying why the line is not one."""
    try:
        value = _decode_json(text)
    except _JsonError as err:
        column = err.column if err.line == 1 else None
        return RowError(str(err), file=path, row=row, line=line, column=column, fix=_ONE_OBJECT)
    if not isinstance(value, dict):
        kind, preview = json_kind(value), text.strip()[:40]
        message = f"a line must hold one JSON object {{...}}, not a JSON {kind} ({preview!r})"
        return RowError(message, file=path, row=row, line=line, fix=_ONE_OBJECT)
    problem = json_value_problem(value)
    return RowError(problem, file=path, row=row, line=line) if problem else value


def jsonl_rows(path: Path) -> Iterator[TableRow]:
    """Rows of a JSON Lines file, one object per non-blank line."""
    with open_binary(path) as handle:
        lines = TextLines(path, handle)
        row = 0
        for text in lines:
            bad = lines.take_bad()
            if not text.strip(" \t\r\n\f\v"):
                continue
            row += 1
            if bad is not None:
                yield TableRow(row, not_utf8(path, row, bad), lines.line)
                continue
            value = _json_row(text.rstrip("\r\n"), path, row, lines.line)
            yield TableRow(row, value, lines.line)


def count_jsonl_rows(path: Path) -> int:
    """Non-blank lines: exactly the rows `jsonl_rows` yields, without parsing them."""
    with open_binary(path) as handle:
        count = 0
        for number, raw in enumerate(raw_lines(handle), 1):
            if number == 1:
                if raw.startswith(UTF16_BOMS):
                    raise utf16(path)
                raw = raw.removeprefix(UTF8_BOM)
            count += bool(raw.strip(b" \t\r\n\f\v"))
        return count


def json_is_array(path: Path) -> bool:
    """Whether a .json file holds one JSON array (its first non-blank character is '[')."""
    with open_binary(path) as handle:
        head = handle.read(1 << 16)
    return head.removeprefix(UTF8_BOM).lstrip(b" \t\r\n").startswith(b"[")


def json_array_rows(path: Path) -> Iterator[TableRow]:
    """Rows of a .json file holding one array of objects (read whole: a JSON array does not
    stream). Text that is not UTF-8 or not JSON is an error for the whole file."""
    with open_binary(path) as handle:
        data = handle.read()
    skip = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise not_utf8(path, None, (line, offset, data[offset])) from None
    try:
        items = _decode_json(text)
    except _JsonError as err:
        raise InputFormatError(
            str(err),
            file=path,
            line=err.line,
            column=err.column,
            fix="A .json file must hold one JSON array of objects, or one JSON object per line.",
        ) from None
    for row, item in enumerate(items, 1):
        problem = (
            f"array element {row} is a JSON {json_kind(item)}, not an object {{...}}"
            if not isinstance(item, dict)
            else json_value_problem(item)
        )
        yield TableRow(row, RowError(problem, file=path, row=row) if problem else item)
