"""Whatever bytes or JSON a file holds, the prompts reader and the human-label importer either
return rows or raise a CaiError: never another exception. Counting agrees with reading, and
CSV that cai writes reads back exactly."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cai.errors import CaiError
from cai.human.imports import import_human
from cai.tables import count_rows, iter_prompts, iter_rows, read_rows, write_csv

SETTINGS = settings(max_examples=150, deadline=None, database=None)
COLUMNS = [
    "prompt", "messages", "text", "id", "role", "content", "chosen", "rejected", "prob_chosen",
    "response_a", "response_b", "label", "item_id", "rater", "winner", "answer_a",
]  # fmt: skip
ROLES = ["user", "assistant", "system", "tool", "Human"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [*ROLES, "a", "b", "tie", "0.7", "[]", "\n\nHuman: hi\n\nAssistant: yo", "\ud800"]
    )
)
messages = st.lists(
    st.fixed_dictionaries(
        {}, optional={"role": st.sampled_from(ROLES) | scalars, "content": scalars}
    ),
    max_size=4,
)
json_values = st.recursive(
    scalars | messages,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(COLUMNS) | st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)
texts = st.text(max_size=10) | messages | scalars
numbers = st.sampled_from(
    [10**400, -(10**400), 2**63, 1e308, float("nan"), 0.5, -0.0, 1, "0.5", "nan", None, [], {}]
)
trl_rows = st.fixed_dictionaries(
    {"chosen": texts, "rejected": texts},
    optional={"prompt": texts, "prob_chosen": numbers, "rater_id": scalars, "extra": scalars},
)
table_rows = st.fixed_dictionaries(
    {"prompt": texts, "response_a": texts, "response_b": texts},
    optional={"label": scalars, "prob_a": numbers, "item_id": scalars, "Annotator": scalars},
)
rows = trl_rows | table_rows | st.dictionaries(st.sampled_from(COLUMNS), json_values, max_size=6)


def _rows_or_cai_error(read: Callable[[], Any]) -> Any:
    """Run `read`; a CaiError is an accepted outcome, any other exception fails the test."""
    try:
        return read()
    except CaiError as err:
        assert str(err).strip()
        return err


def _check_file(name: str, data: bytes, format: str = "auto") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        _rows_or_cai_error(lambda: list(iter_prompts(path)))
        outcome = _rows_or_cai_error(lambda: import_human(path, format=format))
        if not isinstance(outcome, CaiError):
            _, report = outcome
            report.summary()
            report.model_dump_json()
            _rows_or_cai_error(lambda: report.require_rows())
        records = _rows_or_cai_error(lambda: list(iter_rows(path)))
        if not isinstance(records, CaiError):
            assert count_rows(path) == len(records)
            assert [r.row for r in records] == list(range(1, len(records) + 1))


def _jsonl(values: list[Any]) -> bytes:
    return "".join(json.dumps(v) + "\n" for v in values).encode()


def _csv(header: list[str], cells: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(cells)
    return buffer.getvalue().encode()


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv", ".json"]))
def test_random_bytes(data, suffix):
    _check_file(f"in{suffix}", data)


@SETTINGS
@given(
    lines=st.lists(
        st.sampled_from([b"\xef\xbb\xbf", b"\xff", b"\r", b"\n", b'"', b",", b"[", b"{"])
        | st.binary(max_size=8)
        | st.text(max_size=12).map(str.encode),
        max_size=20,
    ),
    suffix=st.sampled_from([".jsonl", ".csv"]),
)
def test_random_fragments(lines, suffix):
    _check_file(f"in{suffix}", b"".join(lines))


@SETTINGS
@given(values=st.lists(json_values, max_size=5))
def test_random_json_values(values):
    _check_file("in.jsonl", _jsonl(values))
    _check_file("in.json", json.dumps(values).encode())


@SETTINGS
@given(
    values=st.lists(rows, min_size=1, max_size=5),
    format=st.sampled_from(["auto", "trl", "hh", "table"]),
)
def test_random_rows_with_known_columns(values, format):
    _check_file("in.jsonl", _jsonl(values), format)


@SETTINGS
@given(
    header=st.lists(st.sampled_from(COLUMNS) | st.text(max_size=6), min_size=1, max_size=5),
    cells=st.lists(st.lists(st.text(max_size=15), max_size=6), max_size=5),
)
def test_random_csv_tables(header, cells):
    _check_file("in.csv", _csv(header, cells))


@SETTINGS
@given(
    cells=st.lists(
        st.lists(
            st.text(max_size=20) | st.sampled_from(["=1", "'-x", "@", "\r\n", ""]),
            min_size=3,
            max_size=3,
        ),
        max_size=6,
    )
)
def test_written_csv_reads_back_exactly(cells):
    columns = ["a", "b", "c"]
    table = [dict(zip(columns, row, strict=True)) for row in cells]
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(table, Path(folder) / "out.csv", columns)
        assert read_rows(path) == table
        assert count_rows(path) == len(table)
