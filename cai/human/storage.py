"""Reading and writing preference datasets: `save_to_disk` directories, Parquet, JSONL, CSV.

Reading goes through `cai.io`'s one table reader, so a malformed line is reported with its
file, row and line instead of failing the whole file, and CSV written here reads back exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai.io import (
    FORMATS,
    InputFormatError,
    RowError,
    iter_table_rows,
    read_table,
    write_csv,
)

__all__ = [
    "FORMATS",
    "DatasetFileError",
    "RowError",
    "iter_rows",
    "read_preference_rows",
    "read_rows",
    "write_rows",
]


class DatasetFileError(InputFormatError):
    """A dataset path cannot be written (reading fails with `cai.io.InputFormatError`)."""


iter_rows = iter_table_rows
"""(row number, row or RowError) pairs, 1-based; see `cai.io.iter_table_records`."""

read_rows = read_table
"""All rows of a dataset; raises the first unreadable row (naming file, row and line)."""


def read_preference_rows(path: str | Path, required: bool = True) -> list[dict[str, Any]]:
    """The rows of a preference dataset, checked to be preference rows (the error names the
    file and row); with `required`, a dataset with no rows is an error too."""
    from cai.human.pairs import check_preference_rows

    rows = read_table(path)
    if required and not rows:
        raise InputFormatError(
            "the dataset holds no rows",
            file=path,
            fix="Check the path; a preference dataset has prompt, chosen, rejected and "
            "prob_chosen columns.",
        )
    check_preference_rows(rows, str(path))
    return rows


def write_rows(
    rows: list[dict[str, Any]], path: str | Path, columns: list[str] | None = None
) -> Path:
    """Write rows with `datasets`: a directory (save_to_disk), .parquet or .jsonl; .csv for
    labelling sheets (see `cai.io.write_csv`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    # every row gets every column (datasets' from_list would keep only the first row's keys)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    if suffix == ".csv":
        return write_csv(rows, path, columns)
    if suffix not in ("", ".jsonl", ".json", ".parquet"):
        raise DatasetFileError(
            f"cannot write {suffix!r} files",
            file=path,
            fix="Use .jsonl, .parquet, .csv or a directory name.",
        )
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{column: row.get(column) for column in columns} for row in rows]
    dataset = Dataset.from_list(rows) if rows else Dataset.from_dict({c: [] for c in columns})
    if suffix in (".jsonl", ".json"):
        dataset.to_json(str(path), lines=True, force_ascii=False)
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.save_to_disk(str(path))
    return path
