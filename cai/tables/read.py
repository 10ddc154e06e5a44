"""The one reader of tables: any source cai reads, as a stream of numbered rows.

A source is a JSON Lines, JSON array, CSV or Parquet file; a `save_to_disk` directory; a
directory of split files (`train.jsonl`, `flagged.parquet`, ...) as `write_splits` writes
them; or a Hugging Face Hub dataset id (`owner/name`, when no local directory `owner`
exists). Problems with the whole source raise `InputFormatError` (at the first `next`); a
row that cannot be read comes back as a `RowError` in its place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from cai.tables.arrow_files import (
    is_saved,
    load_saved,
    no_split,
    parquet_file,
    parquet_rows,
    saved_rows,
)
from cai.tables.csv_files import csv_rows
from cai.tables.hub import hub_rows, is_hub_id
from cai.tables.json_files import count_jsonl_rows, json_array_rows, json_is_array, jsonl_rows
from cai.tables.rows import InputFormatError, RowError, TableRow

READABLE = ".jsonl, .json, .csv, .parquet or a save_to_disk directory"
"""The sources cai reads, for messages."""

_SPLIT_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def _no_dataset(directory: Path, split: str | None) -> InputFormatError:
    found = sorted(p.name for p in directory.iterdir())
    name = split or "train"
    problem = (
        f"holds no dataset (found: {', '.join(found[:10])})"
        if found
        else "is a directory but not a dataset saved with save_to_disk (it is empty)"
    )
    return InputFormatError(
        problem,
        file=directory,
        fix=f"Point at a directory written by save_to_disk, at one holding {name}.parquet or "
        f"{name}.jsonl, or at a .jsonl, .json, .csv or .parquet file.",
    )


def local_source(path: Path, split: str | None) -> Path:
    """The file or `save_to_disk` directory that holds `split` of a local source (a single
    file is one table, whatever `split` says)."""
    if not path.is_dir() or is_saved(path):
        return path
    for suffix in _SPLIT_SUFFIXES:
        candidate = path / f"{split or 'train'}{suffix}"
        if candidate.is_file():
            return candidate
    splits = sorted(p.stem for p in path.iterdir() if p.is_file() and p.suffix in _SPLIT_SUFFIXES)
    if split is not None and splits:
        raise no_split(path, split, splits)
    raise _no_dataset(path, split)


def file_reader(path: Path) -> Callable[[Path], Iterator[TableRow]]:
    """The row reader for one file, chosen by its name (a file error when none fits)."""
    if not path.exists():
        raise InputFormatError(
            "no such file or directory", file=path, fix=f"Check the path (inputs: {READABLE})."
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return jsonl_rows
    if suffix == ".json":
        return json_array_rows if json_is_array(path) else jsonl_rows
    if suffix == ".csv":
        return csv_rows
    if suffix == ".parquet":
        return parquet_rows
    raise InputFormatError(
        f"unknown file type {suffix or '(no extension)'!r}", file=path, fix=f"Use {READABLE}."
    )


def iter_rows(source: str | Path, split: str | None = None) -> Iterator[TableRow]:
    """Every row of a table, in order, as `TableRow`s (row number, row or `RowError`, line).

    A row that cannot be read is a `RowError` in `.data`, and reading goes on with the next;
    whole-source problems raise `InputFormatError`. `split` picks a split of a
    `save_to_disk` DatasetDict, of a directory of split files or of a Hub dataset (default:
    `train`, else the first).
    """
    if is_hub_id(source):
        yield from hub_rows(str(source), split)
        return
    path = local_source(Path(source), split)
    if path.is_dir():
        yield from saved_rows(path, split)
        return
    yield from file_reader(path)(path)


def stream_rows(source: str | Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a table, one at a time; raises at the first row that cannot be read."""
    for record in iter_rows(source, split):
        if isinstance(record.data, RowError):
            raise record.data
        yield record.data


def read_rows(source: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """All rows of a table; raises the first unreadable row (naming file, row and line)."""
    return list(stream_rows(source, split))


def count_rows(source: str | Path, limit: int | None = None) -> int:
    """The number of rows `iter_rows` yields (at most `limit`), cheaply where the format
    allows: JSONL lines are counted without parsing, Parquet from its metadata."""
    if is_hub_id(source):
        return sum(1 for _ in islice(iter_rows(source), limit))
    path = local_source(Path(source), None)
    if path.is_dir():
        n = len(load_saved(path, None))
    else:
        reader = file_reader(path)
        if reader is parquet_rows:
            n = parquet_file(path).metadata.num_rows
        elif reader is jsonl_rows:
            n = count_jsonl_rows(path)
        else:
            n = sum(1 for _ in islice(reader(path), limit))
    return min(n, limit) if limit is not None else n
