"""Text files as decoded lines: UTF-8 only, every line ending, and the exact place of a
byte that is not UTF-8 (line and byte offset), so a reader can report it for its row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cai.tables.rows import InputFormatError, RowError

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF8_FIX = (
    "Re-save the file as UTF-8 (in a spreadsheet: Save As > CSV UTF-8; in an editor: save "
    "with encoding UTF-8)."
)
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


def raw_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines with their endings, split at \\n, \\r\\n and a lone \\r (as text mode would)."""
    for chunk in handle:
        if b"\r" in chunk:
            yield from (part for part in _LONE_CR.split(chunk) if part)
        else:
            yield chunk


class TextLines:
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
        for raw in raw_lines(self.handle):
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
        if raw.startswith(UTF16_BOMS):
            raise utf16(self.path)
        if raw.startswith(UTF8_BOM):
            self.offset += len(UTF8_BOM)
            return raw[len(UTF8_BOM) :]
        return raw

    def take_bad(self) -> tuple[int, int, int] | None:
        bad, self.bad = self.bad, None
        return bad


def utf16(path: Path) -> InputFormatError:
    return InputFormatError("the file is UTF-16 text, not UTF-8", file=path, line=1, fix=UTF8_FIX)


def not_utf8(path: Path, row: int | None, bad: tuple[int, int, int]) -> RowError:
    line, offset, byte = bad
    return RowError(
        f"not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} cannot be decoded",
        file=path,
        row=row,
        line=line,
        fix=UTF8_FIX,
    )


def open_binary(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as err:
        raise InputFormatError(f"cannot be opened ({err.strerror})", file=path) from None
