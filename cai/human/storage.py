"""Reading and writing preference datasets: `save_to_disk` directories, Parquet, JSONL, CSV.

Everything goes through `cai.datasets_io` (and so `cai.io`'s one table reader): a malformed
line is reported with its file, row and line instead of failing the whole file, CSV written
here reads back exactly, and writes are atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cai.datasets_io import read_rows, stream_rows, write_table
from cai.io import FORMATS, InputFormatError, RowError, iter_table_rows

__all__ = [
    "FORMATS",
    "DatasetFileError",
    "RowError",
    "iter_preference_rows",
    "iter_rows",
    "read_preference_rows",
    "read_rows",
    "write_rows",
]

DatasetFileError = InputFormatError
"""The older name of the error for a dataset path that cannot be read or written."""

iter_rows = iter_table_rows
"""(row number, row or RowError) pairs, 1-based; see `cai.io.iter_table_records`."""


def _no_rows(path: str | Path) -> InputFormatError:
    return InputFormatError(
        "the dataset holds no rows",
        file=path,
        fix="Check the path; a preference dataset has prompt, chosen, rejected and "
        "prob_chosen columns.",
    )


def read_preference_rows(path: str | Path, required: bool = True) -> list[dict[str, Any]]:
    """The rows of a preference dataset, checked to be preference rows (the error names the
    file and row); with `required`, a dataset with no rows is an error too."""
    from cai.human.pairs import check_preference_rows

    rows = read_rows(path)
    if required and not rows:
        raise _no_rows(path)
    check_preference_rows(rows, str(path))
    return rows


def iter_preference_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a preference dataset one at a time, each checked as `read_preference_rows`
    checks them (for one pass over a dataset without holding it in memory)."""
    from cai.human.pairs import PairDataError, check_preference_rows

    for number, row in enumerate(stream_rows(path), 1):
        try:
            check_preference_rows([row], str(path))
        except PairDataError as err:
            raise PairDataError(
                err.message, file=path, row=number, key=err.key, fix=err.fix
            ) from None
        yield row


def write_rows(
    rows: Iterable[dict[str, Any]], path: str | Path, columns: list[str] | None = None
) -> Path:
    """Write rows atomically: a directory (save_to_disk), .parquet or .jsonl; .csv for
    labelling sheets (see `cai.io.write_csv`). Every row gets every column (the union of all
    rows' keys, or `columns`), so no column is lost when the first row lacks it."""
    rows = list(rows)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    return write_table(rows, path, columns)
