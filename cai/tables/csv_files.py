"""CSV sheets, read strictly and written safely: every cell that a spreadsheet would run as
a formula is escaped on the way out and unescaped on the way in, so what cai writes reads
back exactly; nested values are JSON-encoded."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cai.tables.rows import InputFormatError, RowError, TableRow, counted
from cai.tables.text import TextLines, not_utf8, open_binary

CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell starting with one of these as a formula (CSV injection)."""

_FORMULA_CHARS = "".join(re.escape(c) for c in CSV_FORMULA_START)
_ESCAPED_CELL = re.compile(f"^'+[{_FORMULA_CHARS}]")
_NEEDS_ESCAPE = re.compile(f"^'*[{_FORMULA_CHARS}]")
_CSV_QUOTES = 'Put a field with quotes in double quotes and double each quote inside ("a ""b"" c").'


def _allow_long_csv_fields() -> None:
    """Let CSV fields be as long as memory allows (the default limit is 128 KiB, shorter
    than long model responses); the limit is a C long, 32 bits on Windows."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def escape_csv_cell(value: Any) -> Any:
    """A cell that spreadsheets would not run as a formula: text starting with = + - @ tab
    or CR gets a leading `'`. Text that already starts with quotes before one of those gets
    one more, so `unescape_csv_cell` restores every value exactly."""
    if isinstance(value, str) and _NEEDS_ESCAPE.match(value):
        return "'" + value
    return value


def unescape_csv_cell(text: str) -> str:
    """The value `escape_csv_cell` was given: one leading `'` dropped when only quotes and
    then a formula character follow it."""
    return text[1:] if _ESCAPED_CELL.match(text) else text


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    return escape_csv_cell(value)


def write_csv(rows: Iterable[dict[str, Any]], path: str | Path, columns: list[str]) -> Path:
    """Write rows as CSV, the one place cai writes CSV: nested values JSON-encoded, cells
    escaped against formula injection (read back exactly by `cai.tables.iter_rows`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([escape_csv_cell(column) for column in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return path


def _csv_header(fields: list[str], path: Path, line: int) -> list[str]:
    """Column names: stripped, unescaped, a blank one named by its position; duplicates fail
    (a dict row would keep only the last of them)."""
    names = [unescape_csv_cell(f.strip()) or f"column_{i}" for i, f in enumerate(fields, 1)]
    for name in names:
        if names.count(name) > 1:
            raise InputFormatError(
                f"column {name!r} appears {names.count(name)} times in the header",
                file=path,
                line=line,
                fix="Give every column a distinct name.",
            )
    return names


def _csv_row(
    fields: list[str], header: list[str], path: Path, row: int, line: int
) -> dict[str, Any] | RowError:
    if len(fields) != len(header):
        more = "more" if len(fields) > len(header) else "fewer"
        return RowError(
            f"{counted(len(fields), 'field')}, {more} than the header's "
            f"{counted(len(header), 'column')}",
            file=path,
            row=row,
            line=line,
            fix="Quote fields that contain commas, quotes or line breaks (a spreadsheet's CSV "
            "export does), and give every row one field per column.",
        )
    return dict(zip(header, map(unescape_csv_cell, fields), strict=True))


def csv_rows(path: Path) -> Iterator[TableRow]:
    """Rows of a CSV file with a header line. A record whose bytes are not UTF-8, that is not
    valid CSV or that has the wrong number of fields becomes a RowError (a bad header fails
    the whole file). Leading `'` written against formula injection are removed."""
    _allow_long_csv_fields()
    with open_binary(path) as handle:
        lines = TextLines(path, handle)
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        row = 0
        while True:
            start = lines.line + 1
            try:
                fields: list[str] | str = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                fields = f"not valid CSV ({err})"
            bad = lines.take_bad()
            if header is None:
                if bad is not None:
                    raise not_utf8(path, None, bad)
                if isinstance(fields, str):
                    raise InputFormatError(f"header: {fields}", file=path, line=start)
                if fields:  # blank lines before the header are skipped
                    header = _csv_header(fields, path, start)
                continue
            if fields == []:
                continue
            row += 1
            if bad is not None:
                yield TableRow(row, not_utf8(path, row, bad), start)
            elif isinstance(fields, str):
                error = RowError(fields, file=path, row=row, line=start, fix=_CSV_QUOTES)
                yield TableRow(row, error, start)
            else:
                yield TableRow(row, _csv_row(fields, header, path, row, start), start)
