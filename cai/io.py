"""Reading input tables and prompts, and writing CSV, streaming so memory stays flat.

Every table cai reads (prompts, human labels, preference and sample files) goes through
`iter_table_records`: JSON Lines, a JSON array (.json), CSV, Parquet or a `save_to_disk`
directory, as a stream of numbered rows. A problem with the whole file (missing, unknown type,
corrupt) raises an `InputFormatError`; a problem with one row (bad JSON, bytes that are not
UTF-8, a CSV row with too many fields) comes back in place of that row as a `RowError`, so a
caller can either stop at it (prompts) or count it and go on (human labels).

Prompts (`iter_prompts`) are rows holding either a text column (one user turn) or a
conversational `messages` column.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from cai.errors import InputError
from cai.records import PromptRecord, stable_id

TEXT_COLUMNS = ("prompt", "text", "instruction", "question", "input")
MESSAGE_COLUMNS = ("messages", "conversation", "prompt")
ROLES = ("system", "user", "assistant")
FORMATS = ".jsonl, .json, .csv, .parquet or a save_to_disk directory"
MAX_JSON_DEPTH = 100
"""Deeper JSON is refused when read: nothing cai reads nests more than a few levels, and
deeper values would overflow the recursion limit of json, pydantic or hashing later on."""

CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell starting with one of these as a formula (CSV injection)."""

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")
_FORMULA_CHARS = "".join(re.escape(c) for c in CSV_FORMULA_START)
_ESCAPED_CELL = re.compile(f"^'+[{_FORMULA_CHARS}]")
_NEEDS_ESCAPE = re.compile(f"^'*[{_FORMULA_CHARS}]")
_UTF8_FIX = (
    "Re-save the file as UTF-8 (in a spreadsheet: Save As > CSV UTF-8; in an editor: save "
    "with encoding UTF-8)."
)


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


# ---- bytes to lines -------------------------------------------------------------------------
def _raw_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines with their endings, split at \\n, \\r\\n and a lone \\r (as text mode would)."""
    for chunk in handle:
        if b"\r" in chunk:
            yield from (part for part in _LONE_CR.split(chunk) if part)
        else:
            yield chunk


class _TextLines:
    """The decoded lines of a text file, remembering where each started.

    A line that is not UTF-8 is decoded with replacement characters (so CSV parsing can go
    on to the next record) and its first bad byte is kept in `bad` until `take_bad` is
    called: a reader turns it into an error for the record that holds the line. A UTF-8
    byte-order mark is skipped; a UTF-16 one fails at once, since every line would be bad.
    """

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.line = 0
        self.offset = 0
        self.bad: tuple[int, int, int] | None = None  # (line, byte offset, byte value)

    def __iter__(self) -> Iterator[str]:
        for raw in _raw_lines(self.handle):
            self.line += 1
            if self.line == 1:
                raw = self._skip_bom(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                if self.bad is None:
                    self.bad = (self.line, self.offset + err.start, raw[err.start])
                text = raw.decode("utf-8", errors="replace")
            self.offset += len(raw)
            yield text

    def _skip_bom(self, raw: bytes) -> bytes:
        if raw.startswith(_UTF16_BOMS):
            raise _utf16(self.path)
        if raw.startswith(_UTF8_BOM):
            self.offset += len(_UTF8_BOM)
            return raw[len(_UTF8_BOM) :]
        return raw

    def take_bad(self) -> tuple[int, int, int] | None:
        bad, self.bad = self.bad, None
        return bad


def _utf16(path: Path) -> InputFormatError:
    return InputFormatError("the file is UTF-16 text, not UTF-8", file=path, line=1, fix=_UTF8_FIX)


def _not_utf8(path: Path, row: int | None, bad: tuple[int, int, int]) -> RowError:
    line, offset, byte = bad
    return RowError(
        f"not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} cannot be decoded",
        file=path,
        row=row,
        line=line,
        fix=_UTF8_FIX,
    )


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as err:
        raise InputFormatError(f"cannot be opened ({err.strerror})", file=path) from None


# ---- JSON -----------------------------------------------------------------------------------
def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else type(value).__name__


def _json_value_problem(value: Any) -> str | None:
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


def _decode_json(text: str) -> Any:
    """`json.loads` with every way it fails (bad syntax, too deep, an integer with more
    digits than Python converts) turned into a `_JsonError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _JsonError(err.msg, err.lineno, err.colno) from None
    except RecursionError:
        raise _JsonError("nested too deeply to read") from None
    except ValueError as err:  # keep the reason, not Python's advice on raising the limit
        raise _JsonError(str(err).split(":")[0]) from None


_ONE_OBJECT = 'Each line must be one JSON object, e.g. {"prompt": "..."}.'


def _json_row(text: str, path: Path, row: int, line: int) -> dict[str, Any] | RowError:
    """One JSON object from one line, or a RowError saying why the line is not one."""
    try:
        value = _decode_json(text)
    except _JsonError as err:
        column = err.column if err.line == 1 else None
        return RowError(str(err), file=path, row=row, line=line, column=column, fix=_ONE_OBJECT)
    if not isinstance(value, dict):
        kind, preview = _json_kind(value), text.strip()[:40]
        message = f"a line must hold one JSON object {{...}}, not a JSON {kind} ({preview!r})"
        return RowError(message, file=path, row=row, line=line, fix=_ONE_OBJECT)
    problem = _json_value_problem(value)
    return RowError(problem, file=path, row=row, line=line) if problem else value


def _jsonl_records(path: Path) -> Iterator[TableRow]:
    with _open(path) as handle:
        lines = _TextLines(path, handle)
        row = 0
        for text in lines:
            bad = lines.take_bad()
            if not text.strip(" \t\r\n\f\v"):
                continue
            row += 1
            if bad is not None:
                yield TableRow(row, _not_utf8(path, row, bad), lines.line)
                continue
            value = _json_row(text.rstrip("\r\n"), path, row, lines.line)
            yield TableRow(row, value, lines.line)


def _json_is_array(path: Path) -> bool:
    """Whether a .json file holds one JSON array (its first non-blank character is '[')."""
    with _open(path) as handle:
        head = handle.read(1 << 16)
    return head.removeprefix(_UTF8_BOM).lstrip(b" \t\r\n").startswith(b"[")


def _json_array_records(path: Path) -> Iterator[TableRow]:
    """Rows of a .json file holding one array of objects (read whole: a JSON array does not
    stream). Text that is not UTF-8 or not JSON is an error for the whole file."""
    with _open(path) as handle:
        data = handle.read()
    skip = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise _not_utf8(path, None, (line, offset, data[offset])) from None
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
            f"array element {row} is a JSON {_json_kind(item)}, not an object {{...}}"
            if not isinstance(item, dict)
            else _json_value_problem(item)
        )
        yield TableRow(row, RowError(problem, file=path, row=row) if problem else item)


# ---- CSV ------------------------------------------------------------------------------------
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
    escaped against formula injection (read back exactly by `iter_table_records`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([escape_csv_cell(column) for column in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return path


_CSV_QUOTES = 'Put a field with quotes in double quotes and double each quote inside ("a ""b"" c").'


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


def _csv_records(path: Path) -> Iterator[TableRow]:
    """Rows of a CSV file with a header line. A record whose bytes are not UTF-8, that is not
    valid CSV or that has the wrong number of fields becomes a RowError (a bad header fails
    the whole file). Leading `'` written against formula injection are removed."""
    _allow_long_csv_fields()
    with _open(path) as handle:
        lines = _TextLines(path, handle)
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
                    raise _not_utf8(path, None, bad)
                if isinstance(fields, str):
                    raise InputFormatError(f"header: {fields}", file=path, line=start)
                if fields:  # blank lines before the header are skipped
                    header = _csv_header(fields, path, start)
                continue
            if fields == []:
                continue
            row += 1
            if bad is not None:
                yield TableRow(row, _not_utf8(path, row, bad), start)
            elif isinstance(fields, str):
                error = RowError(fields, file=path, row=row, line=start, fix=_CSV_QUOTES)
                yield TableRow(row, error, start)
            else:
                yield TableRow(row, _csv_row(fields, header, path, row, start), start)


# ---- Parquet and save_to_disk ---------------------------------------------------------------
def _parquet_file(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _corrupt(path, "Parquet", err) from None


def _corrupt(path: Path, kind: str, err: BaseException) -> InputFormatError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputFormatError(
        f"not a readable {kind} file ({detail[:200]})",
        file=path,
        fix="Write it again, or check that it was copied completely.",
    )


def _parquet_records(path: Path) -> Iterator[TableRow]:
    import pyarrow as pa

    batches = _parquet_file(path).iter_batches(batch_size=1024)
    row = 0
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise _corrupt(path, "Parquet", err) from None
        if batch is None:
            return
        for item in batch.to_pylist():
            row += 1
            yield TableRow(row, item)


def _load_dataset_dir(path: Path):
    """The dataset saved in a directory (a DatasetDict's first split)."""
    import pyarrow as pa

    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / marker).is_file() for marker in markers):
        raise InputFormatError(
            "is a directory but not a dataset saved with save_to_disk (it has no "
            "dataset_info.json or dataset_dict.json)",
            file=path,
            fix="Point at a .jsonl, .json, .csv or .parquet file, or at a directory written by "
            "datasets' save_to_disk.",
        )
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except (OSError, ValueError, KeyError, pa.ArrowException) as err:
        raise _corrupt(path, "save_to_disk dataset", err) from None
    if hasattr(dataset, "keys"):  # a DatasetDict: use its first split
        splits = list(dataset.keys())
        if not splits:
            raise InputFormatError("the saved DatasetDict has no splits", file=path)
        dataset = dataset[splits[0]]
    return dataset


def _dataset_records(path: Path) -> Iterator[TableRow]:
    for row, item in enumerate(_load_dataset_dir(path), 1):
        yield TableRow(row, item)


# ---- the one reader -------------------------------------------------------------------------
def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputFormatError(
            "no such file or directory", file=path, fix=f"Check the path (inputs: {FORMATS})."
        )


def _reader(path: Path):
    """The record reader for a path, chosen by what it is (a file error when none fits)."""
    _check_path(path)
    if path.is_dir():
        return _dataset_records
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records
    if suffix == ".json":
        return _json_array_records if _json_is_array(path) else _jsonl_records
    if suffix == ".csv":
        return _csv_records
    if suffix == ".parquet":
        return _parquet_records
    raise InputFormatError(
        f"unknown file type {suffix or '(no extension)'!r}", file=path, fix=f"Use {FORMATS}."
    )


def iter_table_records(path: str | Path) -> Iterator[TableRow]:
    """Every row of a table file or save_to_disk directory, in order, as `TableRow`s.

    Whole-file problems raise `InputFormatError` (at the first `next`); a row that cannot be
    read is a `RowError` in `TableRow.data`, and reading goes on with the next row.
    """
    path = Path(path)
    yield from _reader(path)(path)


def iter_table_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, row or RowError) for every row: `iter_table_records` without lines."""
    for record in iter_table_records(path):
        yield record.row, record.data


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a table; raises the first RowError (it names the file and row)."""
    rows = []
    for record in iter_table_records(path):
        if isinstance(record.data, RowError):
            raise record.data
        rows.append(record.data)
    return rows


def _count_jsonl(path: Path) -> int:
    """Non-blank lines: exactly the records the JSONL reader yields, without parsing them."""
    with _open(path) as handle:
        count = 0
        for number, raw in enumerate(_raw_lines(handle), 1):
            if number == 1:
                if raw.startswith(_UTF16_BOMS):
                    raise _utf16(path)
                raw = raw.removeprefix(_UTF8_BOM)
            count += bool(raw.strip(b" \t\r\n\f\v"))
        return count


def count_rows(path: str | Path, limit: int | None = None) -> int:
    """The number of rows `iter_table_records` yields (at most `limit`), cheaply where the
    format allows: JSONL lines are counted without parsing, Parquet from its metadata."""
    path = Path(path)
    reader = _reader(path)
    if reader is _dataset_records:
        n = len(_load_dataset_dir(path))
    elif reader is _parquet_records:
        n = _parquet_file(path).metadata.num_rows
    elif reader is _jsonl_records:
        n = _count_jsonl(path)
    else:
        n = sum(1 for _ in islice(reader(path), limit))
    return min(n, limit) if limit is not None else n


# ---- prompts --------------------------------------------------------------------------------
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
    return None if _json_value_problem(items) else items


def _fail(
    path: Path, record: TableRow, message: str, key: str | None = None, fix: str | None = None
) -> InputFormatError:
    return InputFormatError(message, file=path, row=record.row, line=record.line, key=key, fix=fix)


def _message(item: Any, key: str, path: Path, record: TableRow) -> dict[str, str]:
    """One checked {'role', 'content'} message."""
    if not isinstance(item, dict):
        raise _fail(path, record, f"a message must be an object, got {_json_kind(item)}", key)
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
            f"the message content must be text, got {_json_kind(content)}",
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
        f"{'an empty list' if value == [] else _json_kind(value)}",
        name,
    )


def _prompts(path: Path, column: str | None, limit: int | None) -> Iterator[PromptRecord]:
    empty = True
    for record in iter_table_records(path):
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
