"""Tables as `datasets.Dataset`s: rows built into Arrow (types inferred over every row, or
fixed by `features`), and any source loaded for a trainer.

`load_table` keeps a `save_to_disk` directory memory-mapped and reads Parquet with pyarrow;
text files (JSONL, JSON, CSV) go through the row reader into an Arrow table held in memory
(write large training sets as Parquet or `save_to_disk`). Every failure is an
`InputFormatError` (a `RowError` for one row) naming the file and, where known, the row and
column: never a datasets or Arrow traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.tables.arrow_files import load_saved, parquet_file, unreadable
from cai.tables.hub import hub_dataset, is_hub_id
from cai.tables.read import file_reader, iter_rows, local_source
from cai.tables.rows import InputFormatError, RowError, TableRow

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, Features

Numbered = tuple[int, dict[str, Any]]
"""A row with its 1-based number, so an error can say which row broke."""

_BATCH_ROWS = 4096
_TYPES_FIX = "Give each column one type in every row (e.g. always a number, or always text)."
_ARROW_ERRORS: tuple[type[BaseException], ...] = (OverflowError, TypeError, ValueError)


# ---- rows to Arrow --------------------------------------------------------------------------
def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, *_ARROW_ERRORS)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cell_error(
    batch: list[Numbered],
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


def _column_names(
    batch: list[Numbered], features: Features | None, where: Path | str | None, closed: bool
) -> list[Any]:
    """`features`' columns, then every other column any row has, in the order first seen;
    `closed`: a column outside `features` is an error naming its row."""
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
    return names


def _batch_table(
    batch: list[Numbered],
    features: Features | None,
    where: Path | str | None,
    closed: bool = False,
) -> pa.Table:
    """One batch of rows as an Arrow table: every column any row has (a row without one gets
    null), typed by `features` where it names the column and inferred elsewhere. `closed`:
    a column outside `features` is an error (the table must have exactly that schema)."""
    import pyarrow as pa

    schema = features.arrow_schema if features is not None else None
    names = _column_names(batch, features, where, closed)
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


def _batches(rows: Iterable[Numbered]) -> Iterator[list[Numbered]]:
    batch: list[Numbered] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= _BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows_table(
    rows: Iterable[Numbered], features: Features | None, where: Path | str | None
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


def _stream_to_arrow_file(rows: Iterable[Numbered], features: Features, path: Path) -> int:
    """Write rows of a fixed schema to an Arrow stream file batch by batch (flat memory)."""
    import pyarrow as pa

    schema = features.arrow_schema
    count = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batches(rows):
            writer.write_table(_batch_table(batch, features, None, closed=True))
            count += len(batch)
    return count


# ---- building datasets ----------------------------------------------------------------------
def empty_dataset(features: Features | None, columns: Iterable[str] | None = None) -> Dataset:
    """A dataset with no rows that still has its columns (from `features`, else `columns`)."""
    from datasets import Dataset

    if features is not None:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return Dataset.from_dict({name: [] for name in columns or ()})


def _table_dataset(table: pa.Table) -> Dataset:
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(table))


def numbered(
    rows: Iterable[dict[str, Any]], columns: list[str] | None = None
) -> Iterator[Numbered]:
    """Rows with their numbers; with `columns`, each row cut or padded (null) to exactly those."""
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
    table = _rows_table(numbered(rows, columns), features, None)
    if table is None:
        return empty_dataset(features, columns)
    return _table_dataset(table)


def arrow_dataset(rows: Iterable[Numbered], features: Features | None, scratch: Path) -> Dataset:
    """Rows as a Dataset: streamed through an Arrow file in `scratch` when `features` fixes
    the schema (memory stays flat), else built in memory with types inferred."""
    from datasets import Dataset

    if features is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="rows-", suffix=".arrow", dir=scratch)
        os.close(fd)
        arrow = Path(name)
        if _stream_to_arrow_file(rows, features, arrow) == 0:
            return empty_dataset(features)
        return Dataset.from_file(str(arrow), in_memory=False)
    table = _rows_table(rows, None, None)
    return empty_dataset(None) if table is None else _table_dataset(table)


def mapped_dataset(
    rows: Iterable[dict[str, Any]], features: Features, directory: str | Path
) -> Dataset:
    """Rows of a fixed schema as a `datasets.Dataset` memory-mapped from an Arrow file
    written batch by batch into `directory` (memory stays flat however many rows there are;
    the caller keeps `directory` while it uses the dataset). A column outside `features` or
    a value of the wrong type is an `InputFormatError` naming its row."""
    return arrow_dataset(numbered(rows), features, Path(directory))


# ---- loading a source -----------------------------------------------------------------------
def _checked(records: Iterable[TableRow]) -> Iterator[Numbered]:
    for record in records:
        if isinstance(record.data, RowError):
            raise record.data
        yield record.row, record.data


def _parquet_dataset(path: Path) -> Dataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file_reader(path)  # the reader's own checks: a missing file fails as it does there
    parquet_file(path)  # and so does a corrupt one
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise unreadable(path, "Parquet file", err) from None
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
    rows is an error (what a trainer wants). Every failure is an `InputFormatError` (file,
    row where known).
    """
    if is_hub_id(source):
        dataset = hub_dataset(str(source), split, streaming=False)
        where: Path | str = str(source)
    else:
        where = local_source(Path(source), split)
        if where.is_dir():
            dataset = load_saved(where, split)
        elif where.suffix.lower() == ".parquet":
            dataset = _parquet_dataset(where)
        else:
            table = _rows_table(_checked(iter_rows(where)), features, where)
            dataset = empty_dataset(features) if table is None else _table_dataset(table)
    if not allow_empty and len(dataset) == 0:
        raise InputFormatError(
            "the dataset holds no rows",
            file=where,
            fix="Check the path, or the step that wrote it (its summary says why no rows "
            "were kept).",
        )
    return dataset
