"""What a table reader yields: numbered rows, and the errors that name where a row went wrong.

A problem with a whole source (missing, unknown type, corrupt) is an `InputFormatError`; a
problem with one row (bad JSON, bytes that are not UTF-8, a CSV row with too many fields)
is a `RowError` that comes back in place of that row, so a caller can either stop at it
(prompts) or count it and go on (human labels).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cai.errors import InputError


class InputFormatError(InputError):
    """An input file cannot be read as a table (or its rows as prompts)."""


class RowError(InputFormatError):
    """One row of a file is not a row (invalid JSON, not UTF-8, wrong number of CSV fields);
    it says where (file, row, line) so a caller can raise it or record it and go on."""


class TableRow(NamedTuple):
    """One record of an input table: its 1-based row number (header and blank lines not
    counted), the row or why it is not one, and the 1-based line it starts on (text files)."""

    row: int
    data: dict[str, Any] | RowError
    line: int | None = None


def counted(n: int, noun: str) -> str:
    """ "1 row", "2 rows": a count with its noun, for messages."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
