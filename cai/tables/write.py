"""Writing tables: one dataset (`write_dataset`), a file whose name says its format
(`write_table`), or a directory of splits (`write_splits`).

Writes are atomic: the dataset is built beside its destination and moved into place, and a
directory is replaced only when it holds nothing but dataset files
(`cai.files.replace_dataset`), so a file cai did not write is never deleted. A card
(README.md) goes inside a directory, or beside a file as `<name>.README.md`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.errors import InputError
from cai.files import atomic_write_text, remove_path, replace_dataset, temp_path_beside
from cai.tables.csv_files import write_csv
from cai.tables.dataset import Numbered, arrow_dataset, dataset_from_rows, empty_dataset, numbered
from cai.tables.formats import card_path, format_for_path, normalize_format

if TYPE_CHECKING:
    from datasets import Dataset, Features


def _write_jsonl(rows: Iterable[Numbered], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for _, row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _check_savable(dataset: Dataset, path: Path) -> None:
    if not dataset.column_names:
        raise InputError(
            "an empty dataset with no columns cannot be saved with save_to_disk",
            file=path,
            fix="Write it as jsonl or parquet, or give its columns (features).",
        )


def _save_to_disk(dataset: Dataset, path: Path) -> None:
    _check_savable(dataset, path)
    # An empty dataset needs one explicit shard, or datasets writes no file it can load.
    dataset.save_to_disk(str(path), num_shards=1 if len(dataset) == 0 else None)


def _scratch_dir(beside: Path, scratch_dir: str | Path | None) -> Path:
    base = Path(scratch_dir) if scratch_dir is not None else beside.parent
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".cai-arrow-", dir=base))


def write_dataset(
    rows: Iterable[dict[str, Any]],
    destination: str | Path,
    fmt: str,
    *,
    card: str | None = None,
    features: Features | None = None,
    columns: list[str] | None = None,
    scratch_dir: str | Path | None = None,
) -> Path:
    """Write one table in `fmt` to `destination` atomically (a rerun replaces it whole).

    save_to_disk -> a directory; parquet -> a .parquet file; jsonl -> a .jsonl file (rows
    written as given). `features` fixes the column types (rows are then streamed through an
    Arrow file in `scratch_dir`, beside the destination by default, so memory stays flat);
    `columns` makes every row have exactly those columns. The card goes into the directory,
    or beside the file (`card_path`). An existing directory is replaced only when cai wrote
    everything in it (else `OutputDirError`, and nothing is changed).
    """
    fmt = normalize_format(fmt)
    destination = Path(destination)
    rows_in = numbered(rows, columns)
    tmp = temp_path_beside(destination)  # unique: two writers never share a temp name
    scratch: Path | None = None
    try:
        if fmt == "jsonl":
            tmp.rmdir()
            _write_jsonl(rows_in, tmp)
        else:
            scratch = _scratch_dir(destination, scratch_dir)
            dataset = arrow_dataset(rows_in, features, scratch)
            if fmt == "save_to_disk":
                _save_to_disk(dataset, tmp)
                if card is not None:
                    (tmp / "README.md").write_text(card, encoding="utf-8")
            else:
                tmp.rmdir()
                dataset.to_parquet(str(tmp))
            del dataset
        replace_dataset(tmp, destination)
    except BaseException:
        remove_path(tmp)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if card is not None and fmt != "save_to_disk":
        atomic_write_text(card_path(destination, fmt), card)
    return destination


def write_table(
    rows: Iterable[dict[str, Any]], path: str | Path, columns: list[str] | None = None
) -> Path:
    """Write rows in the format the path's name asks for (`format_for_path`): a directory
    (save_to_disk), .parquet, .jsonl / .json, or a .csv sheet for labelling (`write_csv`:
    nested values JSON-encoded, cells escaped against formula injection). Every row gets
    every column (`columns`, else the union of all rows' keys; a missing one is null, an
    empty CSV cell), so no column is lost when the first row lacks it. Atomic like
    `write_dataset`."""
    path = Path(path)
    fmt = format_for_path(path)
    rows = list(rows)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    if fmt != "csv":
        return write_dataset(rows, path, fmt, columns=columns)
    tmp = temp_path_beside(path)
    try:
        tmp.rmdir()
        write_csv(rows, tmp, columns)
        replace_dataset(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    return path


def _split_datasets(
    splits: Mapping[str, Iterable[dict[str, Any]]], features: Features | None
) -> dict[str, Dataset]:
    """Each split as a dataset; empty ones other than `train` left out, and an empty one
    given the columns of `features`, else of the first split with rows."""
    built = {name: dataset_from_rows(rows, features) for name, rows in splits.items()}
    kept = {name: ds for name, ds in built.items() if len(ds) or name == "train"}
    schema = features or next((ds.features for ds in kept.values() if len(ds)), None)
    if schema is not None:
        kept = {n: ds if len(ds) else empty_dataset(schema) for n, ds in kept.items()}
    return kept


def write_splits(
    splits: Mapping[str, Iterable[dict[str, Any]]],
    directory: str | Path,
    fmt: str = "save_to_disk",
    *,
    card: str | None = None,
    features: Features | None = None,
) -> Path:
    """Write splits to one directory atomically: a `save_to_disk` DatasetDict, or one
    `<split>.parquet` / `<split>.jsonl` file per split, plus the card as README.md.

    Empty splits other than `train` are left out. An empty split still gets its columns:
    from `features`, else from the first split with rows. The directory is replaced only
    when cai wrote everything in it (else `OutputDirError`, and nothing is changed).
    """
    from datasets import DatasetDict

    fmt = normalize_format(fmt)
    directory = Path(directory)
    tmp = temp_path_beside(directory)
    try:
        if fmt == "jsonl":
            for name, rows in splits.items():
                target = tmp / f"{name}.jsonl"
                if not _write_jsonl(numbered(rows), target) and name != "train":
                    target.unlink()
        else:
            kept = _split_datasets(splits, features)
            if fmt == "save_to_disk":
                for dataset in kept.values():
                    _check_savable(dataset, directory)
                shards = {name: 1 for name, dataset in kept.items() if len(dataset) == 0}
                DatasetDict(kept).save_to_disk(str(tmp), num_shards=shards or None)
            else:
                for name, dataset in kept.items():
                    dataset.to_parquet(str(tmp / f"{name}.parquet"))
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        replace_dataset(tmp, directory)
    except BaseException:
        remove_path(tmp)
        raise
    return directory
