"""Tables on disk: the one place cai reads and writes them.

Reading (`cai.tables.read`), from any source: a JSON Lines, JSON array, CSV or Parquet
file, a `save_to_disk` directory, a directory of split files, or a Hugging Face Hub id:
- `iter_rows`: every row as a `TableRow` (number, row or `RowError`, line), for callers
  that count bad rows and go on;
- `stream_rows` / `read_rows`: the rows one at a time / all at once, raising at the first
  bad one; `count_rows`: how many, cheaply;
- `iter_prompts` / `count_prompts`: rows checked and turned into prompts
  (`cai.tables.prompts`);
- `load_table`: a source as a `datasets.Dataset`; `dataset_from_rows` and
  `mapped_dataset` build one from rows (`cai.tables.dataset`).

Writing (`cai.tables.write`) in the formats of `cai.tables.formats`: `write_dataset` (one
table in a named format), `write_table` (the format the path's name asks for, CSV
included), `write_splits` (a directory of splits); `write_csv` is the one CSV writer,
escaping cells against formula injection (`cai.tables.csv_files`).

Every problem is an `InputFormatError` naming the file and, where known, the row, line and
column: never a traceback from json, csv, pyarrow or datasets.
"""

from cai.tables.csv_files import escape_csv_cell, unescape_csv_cell, write_csv
from cai.tables.dataset import dataset_from_rows, load_table, mapped_dataset
from cai.tables.formats import (
    FORMAT_ALIASES,
    FORMATS,
    DatasetFormat,
    card_path,
    format_for_path,
    normalize_format,
)
from cai.tables.hub import is_hub_id
from cai.tables.json_files import json_messages
from cai.tables.prompts import ROLES, count_prompts, iter_prompts
from cai.tables.read import count_rows, iter_rows, read_rows, stream_rows
from cai.tables.rows import InputFormatError, RowError, TableRow, counted
from cai.tables.write import write_dataset, write_splits, write_table

__all__ = [
    "FORMATS",
    "FORMAT_ALIASES",
    "ROLES",
    "DatasetFormat",
    "InputFormatError",
    "RowError",
    "TableRow",
    "card_path",
    "count_prompts",
    "count_rows",
    "counted",
    "dataset_from_rows",
    "escape_csv_cell",
    "format_for_path",
    "is_hub_id",
    "iter_prompts",
    "iter_rows",
    "json_messages",
    "load_table",
    "mapped_dataset",
    "normalize_format",
    "read_rows",
    "stream_rows",
    "unescape_csv_cell",
    "write_csv",
    "write_dataset",
    "write_splits",
    "write_table",
]
