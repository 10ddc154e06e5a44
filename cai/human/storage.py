"""Preference datasets read back with every row checked as a preference row, so a bad row
is reported with its file, row and column before any work uses it. Reading goes through
`cai.tables` (any format or split it reads); writing is `cai.tables.write_table`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.human.pairs import PairDataError, check_preference_rows
from cai.tables import InputFormatError, read_rows, stream_rows

__all__ = ["iter_preference_rows", "read_preference_rows"]


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
    rows = read_rows(path)
    if required and not rows:
        raise _no_rows(path)
    check_preference_rows(rows, str(path))
    return rows


def iter_preference_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a preference dataset one at a time, each checked as `read_preference_rows`
    checks them (for one pass over a dataset without holding it in memory)."""
    for number, row in enumerate(stream_rows(path), 1):
        try:
            check_preference_rows([row], str(path))
        except PairDataError as err:
            raise PairDataError(
                err.message, file=path, row=number, key=err.key, fix=err.fix
            ) from None
        yield row
