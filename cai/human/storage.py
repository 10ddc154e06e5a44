"""Reading and writing preference datasets: `save_to_disk` directories, Parquet, JSONL, CSV.

Directories and Parquet go through `datasets`/pyarrow; JSONL and CSV are read line by line
so a malformed line is reported with its number instead of failing the whole file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.errors import CaiError

FORMATS = ".jsonl, .json, .csv, .parquet or a save_to_disk directory"


class DatasetFileError(CaiError, ValueError):
    """A dataset path cannot be read or written."""


class RowError(CaiError, ValueError):
    """One line of a file is not a row (e.g. invalid JSON); carries its row number."""

    def __init__(self, row: int, message: str):
        super().__init__(message)
        self.row = row


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, row) pairs, 1-based; an unreadable line yields a RowError, not an exception."""
    path = Path(path)
    if not path.exists():
        raise DatasetFileError(f"{path}: no such file or directory.")
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict: use its first split
            dataset = dataset[next(iter(dataset.keys()))]
        yield from enumerate(dataset, 1)
        return
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            number = 0
            for line in handle:
                if not line.strip():
                    continue
                number += 1
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    yield number, RowError(number, f"not valid JSON ({err.msg})")
                    continue
                if not isinstance(value, dict):
                    yield number, RowError(number, "a line must hold one JSON object")
                    continue
                yield number, value
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            yield from enumerate(csv.DictReader(handle), 1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    else:
        raise DatasetFileError(f"{path}: unknown dataset format {suffix!r}. Use {FORMATS}.")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a dataset; fails with the row number on the first unreadable line."""
    rows = []
    for number, row in iter_rows(path):
        if isinstance(row, RowError):
            raise DatasetFileError(f"{path} row {number}: {row}")
        rows.append(row)
    return rows


def write_rows(
    rows: list[dict[str, Any]], path: str | Path, columns: list[str] | None = None
) -> Path:
    """Write rows with `datasets`: a directory (save_to_disk), .parquet or .jsonl; .csv for
    labelling sheets (nested values JSON-encoded)."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    # every row gets every column (datasets' from_list would keep only the first row's keys)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    rows = [{column: row.get(column) for column in columns} for row in rows]
    if suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                        for k, v in row.items()
                    }
                )
        return path
    if suffix not in ("", ".jsonl", ".json", ".parquet"):
        raise DatasetFileError(
            f"{path}: cannot write {suffix!r}. Use .jsonl, .parquet, .csv or a directory name."
        )
    from datasets import Dataset

    dataset = Dataset.from_list(rows) if rows else Dataset.from_dict({c: [] for c in columns})
    if suffix in (".jsonl", ".json"):
        dataset.to_json(str(path), lines=True, force_ascii=False)
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.save_to_disk(str(path))
    return path
