"""Read a benchmark from a file, a `save_to_disk` directory or a Hub id, and map every row.

Rows that cannot be read or do not fit the format are counted and kept with their row
number, line and reason for the report; they never stop the run, and never count as wrong
or right answers. A benchmark none of whose rows fit is an error.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from cai.errors import InputError
from cai.judge_eval.formats import MAPPERS, BadRow, detect_format, row_format
from cai.judge_eval.items import Benchmark, Malformed
from cai.judge_eval.sampling import stratified_sample
from cai.tables import RowError, iter_rows

_DETECT_ROWS = 20


class NoUsableRowsError(InputError):
    """Every row of a benchmark was malformed, so there is nothing to score."""


def benchmark_name(source: str) -> str:
    """A short name for a source: the file's stem, or a Hub id's name."""
    path = Path(source)
    return path.stem if path.suffix else path.name


def load_benchmark(
    source: str,
    fmt: str = "auto",
    *,
    split: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Benchmark:
    """Every row mapped (or counted as malformed), then the stratified `limit` sample."""
    if fmt == "auto":
        head = list(islice(_readable(source, split), _DETECT_ROWS))
        fmt = detect_format(head, source)
    mapper = MAPPERS[fmt]
    bench = Benchmark(name=name or benchmark_name(source), format=fmt, source=source)
    for record in iter_rows(source, split):
        bench.rows_read += 1
        row = record.data
        if isinstance(row, RowError):
            bench.malformed.append(Malformed(row=record.row, line=record.line, reason=row.message))
            continue
        try:
            bench.add(mapper(row, record.row))
        except BadRow as err:
            found = row_format(row)
            hint = f" (the row looks like {found})" if found not in (None, fmt) else ""
            bench.malformed.append(
                Malformed(row=record.row, line=record.line, reason=f"{err}{hint}")
            )
    if not bench.items:
        raise NoUsableRowsError(
            f"none of the {bench.rows_read} rows fits the {fmt} format",
            file=source,
            fix="Check --format; the first reasons: "
            + "; ".join(f"row {m.row}: {m.reason}" for m in bench.malformed[:3]),
        )
    bench.keep(stratified_sample(bench.items, limit, seed))
    return bench


def _readable(source: str, split: str | None):
    """The rows that parse, for format detection (bad ones are counted when mapping)."""
    for record in iter_rows(source, split):
        if not isinstance(record.data, RowError):
            yield record.data
