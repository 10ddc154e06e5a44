"""Arrow-backed sources: Parquet files and `save_to_disk` directories. pyarrow and datasets
are imported only when one is read, so reading a JSONL file never pays for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cai.tables.rows import InputFormatError, TableRow

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from datasets import Dataset

SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
"""A directory holding one of these was written by `save_to_disk`."""


def unreadable(path: Path | str, kind: str, err: BaseException) -> InputFormatError:
    """A source that exists but cannot be read as `kind`: one line, never a traceback."""
    text = str(err).strip()
    detail = text.splitlines()[0] if text else type(err).__name__
    return InputFormatError(
        f"not a readable {kind} ({detail[:200]})",
        file=path,
        fix="Write it again, or check that it was copied completely.",
    )


def no_split(path: Path, split: str, found: list[str]) -> InputFormatError:
    return InputFormatError(
        f"no split {split!r} (splits: {', '.join(found) or 'none'})",
        file=path,
        fix="Choose one of those splits.",
    )


def parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise unreadable(path, "Parquet file", err) from None


def parquet_rows(path: Path) -> Iterator[TableRow]:
    """Rows of a Parquet file, read batch by batch (memory stays flat)."""
    import pyarrow as pa

    batches = parquet_file(path).iter_batches(batch_size=1024)
    row = 0
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise unreadable(path, "Parquet file", err) from None
        if batch is None:
            return
        for item in batch.to_pylist():
            row += 1
            yield TableRow(row, item)


def is_saved(path: Path) -> bool:
    """Whether a directory was written by `save_to_disk`."""
    return any((path / marker).is_file() for marker in SAVED_MARKERS)


def load_saved(path: Path, split: str | None) -> Dataset:
    """The dataset a `save_to_disk` directory holds (memory-mapped); of a DatasetDict,
    `split` (by default `train`, else the first split)."""
    import pyarrow as pa
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        raise unreadable(path, "save_to_disk dataset", err) from None
    if isinstance(loaded, DatasetDict):
        names = list(loaded.keys())
        if not names:
            raise InputFormatError("the saved DatasetDict has no splits", file=path)
        name = split or ("train" if "train" in loaded else names[0])
        if name not in loaded:
            raise no_split(path, name, names)
        return loaded[name]
    return loaded


def saved_rows(path: Path, split: str | None) -> Iterator[TableRow]:
    for number, item in enumerate(load_saved(path, split), 1):
        yield TableRow(number, item)
