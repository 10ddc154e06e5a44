"""Datasets on disk: the one place cai reads a table as rows or as a `datasets.Dataset`, and
writes one.

Sources (`iter_rows`, `stream_rows`, `read_rows`, `load_table`):
- a file or directory cai reads: JSON Lines, a JSON array, CSV, Parquet or a `save_to_disk`
  directory, all through `cai.io.iter_table_records` (so a bad row is reported the same way
  everywhere: file, row, line and what to fix);
- a directory of split files written by `write_splits` (`train.jsonl`, `flagged.parquet`, ...);
- a Hugging Face Hub dataset id (`owner/name`), when no local directory `owner` exists
  (`is_hub_id`); it is streamed with `datasets.load_dataset(..., streaming=True)`.

`load_table` gives trainers a `datasets.Dataset`: a `save_to_disk` directory stays memory-mapped,
Parquet is read by pyarrow, and text files (JSONL, JSON, CSV) go through the reader into an
Arrow table held in memory (write large training sets as Parquet or `save_to_disk`). Any
failure is a `cai.io.InputFormatError` (a `RowError` for one row) naming the file and, where
known, the row and column: never a datasets or Arrow traceback.

Writing (`write_dataset` for one table, `write_splits` for a directory of splits) uses one
vocabulary of formats, `FORMATS`: `save_to_disk` (a directory), `parquet` and `jsonl`.
`disk`, the older name of `save_to_disk` (in `cai revise` configs), is accepted everywhere
and means the same. Writes are atomic: the dataset is built beside its destination and moved
into place, and a directory is replaced only when it holds nothing but dataset files
(`cai.files.replace_dataset`), so a file cai did not write is never deleted. A card
(README.md) goes inside a directory, or beside a file as `<name>.README.md`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator

from cai.errors import InputError
from cai.files import atomic_write_text, remove_path, replace_dataset, temp_path_beside
from cai.io import InputFormatError, RowError, TableRow, iter_table_records, write_csv

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, Features

__all__ = [
    "FORMATS",
    "FORMAT_ALIASES",
    "DatasetFormat",
    "InputFormatError",
    "RowError",
    "card_path",
    "dataset_from_rows",
    "format_for_path",
    "is_hub_id",
    "iter_rows",
    "load_table",
    "mapped_dataset",
    "normalize_format",
    "read_rows",
    "stream_rows",
    "write_dataset",
    "write_splits",
    "write_table",
]

FORMATS: tuple[str, ...] = ("save_to_disk", "parquet", "jsonl")
"""The formats cai writes datasets in."""

FORMAT_ALIASES: dict[str, str] = {"disk": "save_to_disk"}
"""Older names still accepted in configs and calls: `disk` is `save_to_disk`."""

_TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_SPLIT_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
_SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
_BATCH_ROWS = 4096
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_TYPES_FIX = "Give each column one type in every row (e.g. always a number, or always text)."
_ARROW_ERRORS: tuple[type[BaseException], ...] = (OverflowError, TypeError, ValueError)


def _alias(value: Any) -> Any:
    return FORMAT_ALIASES.get(value, value) if isinstance(value, str) else value


DatasetFormat = Annotated[Literal["save_to_disk", "parquet", "jsonl"], BeforeValidator(_alias)]
"""A config field naming a dataset format (`disk` is read as `save_to_disk`)."""


def normalize_format(fmt: str) -> str:
    """The format's name in `FORMATS` (`disk` -> `save_to_disk`); an unknown one is an error."""
    name = _alias(fmt)
    if name not in FORMATS:
        raise InputError(
            f"unknown dataset format {fmt!r}",
            key="format",
            fix=f"Use {', '.join(FORMATS)} (disk is the older name of save_to_disk).",
        )
    return name


def format_for_path(path: str | Path) -> str:
    """The format a path's name asks for: a directory name (no suffix) is `save_to_disk`,
    .parquet is Parquet, .jsonl and .json are JSON Lines, .csv is a CSV sheet."""
    path = Path(path)
    suffix = path.suffix.lower()
    formats = {"": "save_to_disk", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix == ".csv":
        return "csv"
    if suffix not in formats:
        raise InputFormatError(
            f"cannot write {suffix!r} files",
            file=path,
            fix="Use .jsonl, .parquet, .csv or a directory name (save_to_disk).",
        )
    return formats[suffix]


def card_path(destination: str | Path, fmt: str) -> Path:
    """Where the card of a dataset written to `destination` in `fmt` goes."""
    destination = Path(destination)
    if normalize_format(fmt) == "save_to_disk":
        return destination / "README.md"
    return destination.with_name(destination.name + ".README.md")


# ---- sources --------------------------------------------------------------------------------
def is_hub_id(source: str | Path) -> bool:
    """Whether `source` names a Hugging Face Hub dataset: `owner/name` where neither that
    path nor a local directory `owner` exists, and `name` is not a file name cai reads (a
    missing `runs/prefs` or `data/prefs.jsonl` stays a local path, and fails as one)."""
    text = str(source)
    if not _HUB_ID.fullmatch(text) or ".." in text:
        return False
    path = Path(text)
    return path.suffix.lower() not in _TABLE_SUFFIXES and not path.parent.exists()


def _is_saved(path: Path) -> bool:
    return any((path / marker).is_file() for marker in _SAVED_MARKERS)


def _split_file(directory: Path, split: str) -> Path | None:
    for suffix in _SPLIT_SUFFIXES:
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _not_a_dataset_dir(directory: Path, split: str | None) -> InputFormatError:
    found = sorted(p.name for p in directory.iterdir())
    name = split or "train"
    return InputFormatError(
        f"holds no dataset (found: {', '.join(found[:10]) or 'nothing'})",
        file=directory,
        fix=f"Point at a directory written by save_to_disk, at one holding {name}.parquet or "
        f"{name}.jsonl, or at a .jsonl, .json, .csv or .parquet file.",
    )


def _no_split(path: Path, split: str, found: Iterable[str]) -> InputFormatError:
    return InputFormatError(
        f"no split {split!r} (splits: {', '.join(found) or 'none'})",
        file=path,
        fix="Choose one of those splits.",
    )


def _directory_splits(directory: Path) -> list[str]:
    return sorted(
        p.stem for p in directory.iterdir() if p.is_file() and p.suffix in _SPLIT_SUFFIXES
    )


def _load_saved(path: Path, split: str | None) -> Dataset:
    """The dataset a `save_to_disk` directory holds; of a DatasetDict, `split` (by default
    `train`, else the first split)."""
    import pyarrow as pa
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        raise _unreadable(path, "save_to_disk dataset", err) from None
    if isinstance(loaded, DatasetDict):
        names = list(loaded.keys())
        if not names:
            raise InputFormatError("the saved DatasetDict has no splits", file=path)
        name = split or ("train" if "train" in loaded else names[0])
        if name not in loaded:
            raise _no_split(path, name, names)
        return loaded[name]
    return loaded


def _unreadable(path: Path, kind: str, err: BaseException) -> InputFormatError:
    text = str(err).strip()
    detail = text.splitlines()[0] if text else type(err).__name__
    return InputFormatError(
        f"not a readable {kind} ({detail[:200]})",
        file=path,
        fix="Write it again, or check that it was copied completely.",
    )


def _local_source(path: Path, split: str | None) -> Path:
    """The file or `save_to_disk` directory that holds `split` of a local source."""
    if not path.is_dir() or _is_saved(path):
        return path
    found = _split_file(path, split or "train")
    if found is not None:
        return found
    splits = _directory_splits(path)
    if split is not None and splits:
        raise _no_split(path, split, splits)
    raise _not_a_dataset_dir(path, split)


# ---- the Hugging Face Hub -------------------------------------------------------------------
def _hub_error(repo_id: str, err: BaseException) -> InputFormatError:
    from datasets.exceptions import DatasetNotFoundError

    text = str(err).strip()
    detail = text.splitlines()[0][:200] if text else type(err).__name__
    if isinstance(err, ConnectionError):
        return InputFormatError(
            f"no such file or directory, and the Hugging Face Hub cannot be reached to look "
            f"it up as a dataset ({detail})",
            file=repo_id,
            fix="Check the path; for a Hub dataset, connect to the network (and unset "
            "HF_HUB_OFFLINE), or download it and point at the local copy.",
        )
    if isinstance(err, DatasetNotFoundError | FileNotFoundError):
        return InputFormatError(
            "no such file or directory, and no such dataset on the Hugging Face Hub",
            file=repo_id,
            fix="Check the path or the Hub dataset id (owner/name); a private dataset needs "
            "a token (HF_TOKEN).",
        )
    return InputFormatError(
        f"the Hugging Face Hub dataset cannot be read ({type(err).__name__}: {detail})",
        file=repo_id,
        fix="Check the dataset id and split, or download it and point at the local copy.",
    )


def _hub_dataset(repo_id: str, split: str | None, streaming: bool):
    import datasets

    try:
        return datasets.load_dataset(repo_id, split=split or "train", streaming=streaming)
    except Exception as err:  # the Hub fails in many ways (network, auth, missing split)
        raise _hub_error(repo_id, err) from None


def _hub_records(repo_id: str, split: str | None) -> Iterator[TableRow]:
    rows = iter(_hub_dataset(repo_id, split, streaming=True))
    number = 0
    while True:
        try:
            item = next(rows)
        except StopIteration:
            return
        except Exception as err:  # a network error part-way through the stream
            raise _hub_error(repo_id, err) from None
        number += 1
        yield TableRow(number, dict(item))


# ---- reading rows ---------------------------------------------------------------------------
def iter_rows(source: str | Path, split: str | None = None) -> Iterator[TableRow]:
    """Every row of a table, in order, as `cai.io.TableRow`s (a row that cannot be read is a
    `RowError` in `.data`; whole-source problems raise `InputFormatError`).

    `split` picks a split of a `save_to_disk` DatasetDict, of a `write_splits` directory or
    of a Hub dataset (default: `train`, else the first); a single file is one table.
    """
    if is_hub_id(source):
        yield from _hub_records(str(source), split)
        return
    path = _local_source(Path(source), split)
    if path.is_dir():
        for number, item in enumerate(_load_saved(path, split), 1):
            yield TableRow(number, item)
        return
    yield from iter_table_records(path)


def stream_rows(source: str | Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a table, one at a time; raises at the first row that cannot be read."""
    for record in iter_rows(source, split):
        if isinstance(record.data, RowError):
            raise record.data
        yield record.data


def read_rows(source: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """All rows of a table; raises the first unreadable row (naming file, row and line)."""
    return list(stream_rows(source, split))


# ---- rows to Arrow --------------------------------------------------------------------------
def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, *_ARROW_ERRORS)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cell_error(
    batch: list[tuple[int, dict[str, Any]]],
    name: str,
    arrow_type: pa.DataType | None,
    err: BaseException,
    where: Path | str | None,
) -> InputFormatError:
    """The error for a column that would not convert, naming the first row that breaks it."""
    import pyarrow as pa

    errors = _arrow_errors()
    reference: list[Any] = []
    for number, row in batch:
        value = row.get(name)
        if value is None:
            continue
        try:
            pa.array([*reference, value], type=arrow_type)
        except errors as cell:
            expected = (
                f"'s type, {arrow_type}"
                if arrow_type is not None
                else "'s type, set by its earlier values"
            )
            shown = str(cell).strip().splitlines()[0][:160] if str(cell).strip() else ""
            return InputFormatError(
                f"the value {_preview(value)} does not fit the column{expected}"
                + (f" ({shown})" if shown else ""),
                file=where,
                row=number,
                key=name,
                fix=_TYPES_FIX,
            )
        if arrow_type is None and not reference:
            reference = [value]
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return InputFormatError(
        f"the column cannot be stored ({detail})", file=where, key=name, fix=_TYPES_FIX
    )


def _batch_table(
    batch: list[tuple[int, dict[str, Any]]],
    features: Features | None,
    where: Path | str | None,
    closed: bool = False,
) -> pa.Table:
    """One batch of rows as an Arrow table: every column any row has (a row without one gets
    null), typed by `features` where it names the column and inferred elsewhere. `closed`:
    a column outside `features` is an error (the table must have exactly that schema)."""
    import pyarrow as pa

    schema = features.arrow_schema if features is not None else None
    names = list(features) if features is not None else []
    seen = set(names)
    for number, row in batch:
        for key in row:
            if key in seen:
                continue
            if closed:
                raise InputFormatError(
                    f"column {key!r} is not one of the dataset's columns ({', '.join(names)})",
                    file=where,
                    row=number,
                    key=str(key),
                    fix="Drop that column, or write the rows without a fixed schema.",
                )
            seen.add(key)
            names.append(key)
    arrays = []
    for name in names:
        arrow_type = schema.field(name).type if schema is not None and name in features else None
        values = [row.get(name) for _, row in batch]
        try:
            arrays.append(pa.array(values, type=arrow_type))
        except _arrow_errors() as err:
            raise _cell_error(batch, str(name), arrow_type, err, where) from None
    if closed and schema is not None:
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.Table.from_arrays(arrays, names=[str(n) for n in names])


def _batches(
    rows: Iterable[tuple[int, dict[str, Any]]],
) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    batch: list[tuple[int, dict[str, Any]]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= _BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows_table(
    rows: Iterable[tuple[int, dict[str, Any]]],
    features: Features | None,
    where: Path | str | None,
) -> pa.Table | None:
    """All rows as one in-memory Arrow table (None when there are none). Types are inferred
    over every row (a column that is null at first and text later is text; ints and floats
    are floats) and taken from `features` where it names the column."""
    import pyarrow as pa

    tables: list[pa.Table] = []
    schema: pa.Schema | None = None
    for batch in _batches(rows):
        table = _batch_table(batch, features, where)
        try:
            schema = (
                table.schema
                if schema is None
                else pa.unify_schemas([schema, table.schema], promote_options="permissive")
            )
        except _arrow_errors() as err:
            first, last = batch[0][0], batch[-1][0]
            detail = str(err).strip().splitlines()[0][:200]
            raise InputFormatError(
                f"a column changes type within rows {first}-{last} ({detail})",
                file=where,
                fix=_TYPES_FIX,
            ) from None
        tables.append(table)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _empty_dataset(features: Features | None, columns: Iterable[str] | None = None) -> Dataset:
    from datasets import Dataset

    if features is not None:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return Dataset.from_dict({name: [] for name in columns or ()})


def _table_dataset(table: pa.Table) -> Dataset:
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(table))


def _numbered(rows: Iterable[dict[str, Any]], columns: list[str] | None = None):
    for number, row in enumerate(rows, 1):
        yield number, ({c: row.get(c) for c in columns} if columns is not None else row)


def dataset_from_rows(
    rows: Iterable[dict[str, Any]],
    features: Features | None = None,
    columns: list[str] | None = None,
) -> Dataset:
    """Rows as an in-memory `datasets.Dataset`. Unlike `Dataset.from_list` every column of
    every row is kept and types are inferred over all rows; `features` fixes the types of
    the columns it names; `columns`, when given, are exactly the columns (a row without one
    gets null). A value that fits no column type is an `InputFormatError` naming its row."""
    table = _rows_table(_numbered(rows, columns), features, None)
    if table is None:
        return _empty_dataset(features, columns)
    return _table_dataset(table)


def _stream_to_arrow_file(
    rows: Iterable[tuple[int, dict[str, Any]]], features: Features, path: Path
) -> int:
    """Write rows of a fixed schema to an Arrow stream file batch by batch (flat memory)."""
    import pyarrow as pa

    schema = features.arrow_schema
    count = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batches(rows):
            writer.write_table(_batch_table(batch, features, None, closed=True))
            count += len(batch)
    return count


# ---- loading for trainers -------------------------------------------------------------------
def _checked(records: Iterable[TableRow]) -> Iterator[tuple[int, dict[str, Any]]]:
    for record in records:
        if isinstance(record.data, RowError):
            raise record.data
        yield record.row, record.data


def _parquet_dataset(path: Path) -> Dataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cai.io import count_rows

    count_rows(path)  # the reader's own checks: missing or corrupt files fail as they do there
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _unreadable(path, "Parquet file", err) from None
    return _table_dataset(table)


def load_table(
    source: str | Path,
    split: str | None = None,
    *,
    features: Features | None = None,
    allow_empty: bool = True,
) -> Dataset:
    """A table as a `datasets.Dataset`, from any source `iter_rows` reads.

    `split` picks a split as in `iter_rows`. `features` types the columns of text files (and
    of an empty one, which then still has its columns); Parquet files and `save_to_disk`
    directories keep the types stored with them. With `allow_empty=False` a table without
    rows is an error. Every failure is an `InputFormatError` (file, row where known).
    """
    if is_hub_id(source):
        dataset = _hub_dataset(str(source), split, streaming=False)
        where: Path | str = str(source)
    else:
        where = _local_source(Path(source), split)
        if where.is_dir():
            dataset = _load_saved(where, split)
        elif where.suffix.lower() == ".parquet":
            dataset = _parquet_dataset(where)
        else:
            table = _rows_table(_checked(iter_table_records(where)), features, where)
            dataset = _empty_dataset(features) if table is None else _table_dataset(table)
    if not allow_empty and len(dataset) == 0:
        raise InputFormatError(
            "the dataset holds no rows",
            file=where,
            fix="Check the path, or the step that wrote it (its summary says why no rows "
            "were kept).",
        )
    return dataset


# ---- writing --------------------------------------------------------------------------------
def _write_jsonl(rows: Iterable[tuple[int, dict[str, Any]]], path: Path) -> int:
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


def _arrow_dataset(
    rows: Iterable[tuple[int, dict[str, Any]]],
    features: Features | None,
    scratch: Path,
) -> Dataset:
    """Rows as a Dataset: streamed through an Arrow file in `scratch` when `features` fixes
    the schema (memory stays flat), else built in memory with types inferred."""
    from datasets import Dataset

    if features is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="rows-", suffix=".arrow", dir=scratch)
        os.close(fd)
        arrow = Path(name)
        if _stream_to_arrow_file(rows, features, arrow) == 0:
            return _empty_dataset(features)
        return Dataset.from_file(str(arrow), in_memory=False)
    table = _rows_table(rows, None, None)
    return _empty_dataset(None) if table is None else _table_dataset(table)


def mapped_dataset(
    rows: Iterable[dict[str, Any]], features: Features, directory: str | Path
) -> Dataset:
    """Rows of a fixed schema as a `datasets.Dataset` memory-mapped from an Arrow file
    written batch by batch into `directory` (memory stays flat however many rows there are;
    the caller keeps `directory` while it uses the dataset). A column outside `features` or
    a value of the wrong type is an `InputFormatError` naming its row."""
    return _arrow_dataset(_numbered(rows), features, Path(directory))


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
    numbered = _numbered(rows, columns)
    tmp = temp_path_beside(destination)  # unique: two writers never share a temp name
    scratch: Path | None = None
    try:
        if fmt == "jsonl":
            tmp.rmdir()
            _write_jsonl(numbered, tmp)
        else:
            scratch = _scratch_dir(destination, scratch_dir)
            dataset = _arrow_dataset(numbered, features, scratch)
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
    (save_to_disk), .parquet, .jsonl / .json, or a .csv sheet (`cai.io.write_csv`: nested
    values JSON-encoded, cells escaped against formula injection). Atomic like
    `write_dataset`; a row without one of `columns` gets null (CSV: an empty cell)."""
    path = Path(path)
    fmt = format_for_path(path)
    if fmt != "csv":
        return write_dataset(rows, path, fmt, columns=columns)
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    tmp = temp_path_beside(path)
    try:
        tmp.rmdir()
        write_csv(rows, tmp, columns)
        replace_dataset(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    return path


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
                if not _write_jsonl(_numbered(rows), target) and name != "train":
                    target.unlink()
        else:
            built = {name: dataset_from_rows(rows, features) for name, rows in splits.items()}
            kept = {name: ds for name, ds in built.items() if len(ds) or name == "train"}
            schema = features or next((ds.features for ds in kept.values() if len(ds)), None)
            if schema is not None:
                kept = {n: ds if len(ds) else _empty_dataset(schema) for n, ds in kept.items()}
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
