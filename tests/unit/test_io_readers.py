"""The one table reader (`cai.tables`): every malformed input is one CaiError naming the file and
the row / line / key, never a traceback or a silently dropped row; and what cai writes as CSV
reads back exactly."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.errors import CaiError
from cai.tables import (
    InputFormatError,
    RowError,
    count_prompts,
    count_rows,
    escape_csv_cell,
    iter_prompts,
    iter_rows,
    read_rows,
    unescape_csv_cell,
    write_csv,
)


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _error(path, column=None) -> str:
    with pytest.raises(CaiError) as caught:
        list(iter_prompts(path, column))
    return str(caught.value)


def _sample(tmp_path, name):
    """`cai sample` on a prompts file with the scripted backend: exit code and output."""
    out = tmp_path / "run"
    args = ["sample", str(tmp_path / name), "--out", str(out), "--backend", "scripted"]
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


# ---- text encoding --------------------------------------------------------------------------
def test_non_utf8_prompt_names_file_line_and_byte_offset(tmp_path):
    path = _write(tmp_path / "p.jsonl", b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    message = _error(path)
    assert message.startswith(f"{path}:2 row 2: not UTF-8 text: byte 0xe9 at byte offset 32 ")
    assert "Re-save the file as UTF-8" in message
    code, output = _sample(tmp_path, "p.jsonl")
    assert code == 2 and "p.jsonl:2 row 2: not UTF-8 text" in output


def test_non_utf8_csv_record_is_reported_and_later_rows_still_read(tmp_path):
    path = _write(tmp_path / "p.csv", b'prompt,id\n"multi\nline",1\nbad \xff,2\nfine,3\n')
    records = list(iter_rows(path))
    assert [r.row for r in records] == [1, 2, 3] and [r.line for r in records] == [2, 4, 5]
    assert records[0].data == {"prompt": "multi\nline", "id": "1"}
    assert isinstance(records[1].data, RowError)
    assert str(records[1].data).startswith(f"{path}:4 row 2: not UTF-8 text: byte 0xff at byte")
    assert records[2].data == {"prompt": "fine", "id": "3"}


def test_non_utf8_header_and_utf16_files_fail_as_a_whole(tmp_path):
    header = _write(tmp_path / "h.csv", b"pr\xf6mpt\nx\n")
    with pytest.raises(InputFormatError, match=r"h\.csv:1: not UTF-8 text: byte 0xf6 at byte"):
        read_rows(header)
    utf16 = _write(tmp_path / "u.csv", "prompt\nhello\n".encode("utf-16"))
    with pytest.raises(InputFormatError, match=r"u\.csv:1: the file is UTF-16 text, not UTF-8"):
        read_rows(utf16)
    with pytest.raises(InputFormatError, match="UTF-16"):
        count_rows(_write(tmp_path / "u.jsonl", '{"prompt": "x"}\n'.encode("utf-16")))


def test_byte_order_mark_is_accepted(tmp_path):
    csv_path = _write(tmp_path / "p.csv", b"\xef\xbb\xbfprompt,id\nhello,7\n")
    assert read_rows(csv_path) == [{"prompt": "hello", "id": "7"}]
    jsonl = _write(tmp_path / "p.jsonl", b'\xef\xbb\xbf{"prompt": "hi"}\n')
    assert [p.prompt[0]["content"] for p in iter_prompts(jsonl)] == ["hi"]
    assert count_rows(csv_path) == count_rows(jsonl) == 1


# ---- JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "kind"), [('"just text"', "string"), ("42", "number"), ("[1, 2]", "array")]
)
def test_jsonl_line_that_is_not_an_object(tmp_path, line, kind):
    path = _write(tmp_path / "p.jsonl", _jsonl({"prompt": "ok"}, "", line))
    message = _error(path)
    assert message.startswith(f"{path}:3 row 2: a line must hold one JSON object {{...}}, ")
    assert f"not a JSON {kind}" in message


def test_invalid_json_names_line_and_column(tmp_path):
    path = _write(tmp_path / "p.jsonl", _jsonl({"prompt": "ok"}, '{"prompt": '))
    assert _error(path).startswith(f"{path}:2:12 row 2: not valid JSON (Expecting value)")


def test_deeply_nested_json_is_a_row_error_not_a_recursion_error(tmp_path):
    path = _write(tmp_path / "p.jsonl", "[" * 100_000 + "]" * 100_000 + "\n")
    assert _error(path).startswith(f"{path}:1 row 1: not valid JSON (nested too deeply to read)")
    nested = {"prompt": "x", "meta": json.loads("[" * 150 + "]" * 150)}
    path = _write(tmp_path / "q.jsonl", _jsonl(nested))
    assert "JSON nested deeper than 100 levels" in _error(path)


def test_unpaired_surrogate_and_huge_integer_are_row_errors(tmp_path):
    path = _write(tmp_path / "p.jsonl", '{"prompt": "\\ud800"}\n')
    assert "unpaired surrogate escape" in _error(path)
    path = _write(tmp_path / "q.jsonl", '{"prompt": "x", "n": 1' + "0" * 5000 + "}\n")
    assert _error(path).startswith(f"{path}:1 row 1: not valid JSON (Exceeds the limit")


def test_json_array_file(tmp_path):
    path = _write(tmp_path / "p.json", '\n  [{"prompt": "a"},\n {"prompt": "b"}]\n')
    assert [p.prompt[0]["content"] for p in iter_prompts(path)] == ["a", "b"]
    assert count_rows(path) == 2
    bad = _write(tmp_path / "q.json", '[{"prompt": "a"}, "b"]')
    assert _error(bad) == f"{bad} row 2: array element 2 is a JSON string, not an object {{...}}"
    broken = _write(tmp_path / "r.json", '[{"prompt": "a"},\n {"prompt": }]')
    assert _error(broken).startswith(f"{broken}:2:13: not valid JSON (Expecting value)")


# ---- CSV ------------------------------------------------------------------------------------
def test_csv_row_with_more_or_fewer_fields_than_the_header(tmp_path):
    path = _write(tmp_path / "p.csv", "prompt,id\nhello,1,surplus\n")
    assert _error(path).startswith(f"{path}:2 row 1: 3 fields, more than the header's 2 columns.")
    path = _write(tmp_path / "q.csv", "prompt,id\nhello,1\n\nbye\n")
    assert _error(path).startswith(f"{path}:4 row 2: 1 field, fewer than the header's 2 columns")


def test_csv_fields_longer_than_128_kib_are_read(tmp_path):
    long_text = "y" * (300 * 1024)
    path = write_csv([{"prompt": long_text}], tmp_path / "p.csv", ["prompt"])
    assert [p.prompt[0]["content"] for p in iter_prompts(path)] == [long_text]


def test_csv_header_problems(tmp_path):
    path = _write(tmp_path / "p.csv", "prompt,prompt\na,b\n")
    with pytest.raises(InputFormatError, match=r"p\.csv:1: column 'prompt' appears 2 times"):
        read_rows(path)
    path = _write(tmp_path / "q.csv", " prompt ,\nhi,\n")
    assert read_rows(path) == [{"prompt": "hi", "column_2": ""}]


def test_csv_quote_problems_are_row_errors(tmp_path):
    path = _write(tmp_path / "p.csv", 'prompt,id\n"a"b,1\nfine,2\n')
    records = list(iter_rows(path))
    assert isinstance(records[0].data, RowError) and "not valid CSV" in str(records[0].data)
    assert records[1].data == {"prompt": "fine", "id": "2"}


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x", "''-x"])
def test_formula_cells_are_escaped_and_restored_exactly(text):
    escaped = escape_csv_cell(text)
    assert escaped == "'" + text and unescape_csv_cell(escaped) == text


@pytest.mark.parametrize("text", ["plain", "'quoted", "", "a=b", "'", "''"])
def test_other_cells_are_left_alone(text):
    assert escape_csv_cell(text) == text and unescape_csv_cell(text) == text


def test_write_csv_round_trip_is_exact(tmp_path):
    rows = [
        {"a": "=cmd|' /C calc'!A0", "b": "-2", "c": ["x", {"y": 1}]},
        {"a": 'line\r\nbreak, and "quotes"', "b": "'@x", "c": None},
    ]
    path = write_csv(rows, tmp_path / "out.csv", ["a", "b", "c"])
    raw = path.read_text(encoding="utf-8")
    assert "'=cmd" in raw and "'-2" in raw and "''@x" in raw
    back = read_rows(path)
    assert back[0] == {"a": rows[0]["a"], "b": "-2", "c": '["x", {"y": 1}]'}
    assert back[1] == {"a": rows[1]["a"], "b": "'@x", "c": ""}


# ---- empty files and paths ------------------------------------------------------------------
@pytest.mark.parametrize("content", ["", "\n  \n\n", "\ufeff"])
def test_empty_or_blank_prompts_file_is_an_error(tmp_path, content):
    path = _write(tmp_path / "p.jsonl", content)
    assert _error(path).startswith(f"{path}: the file is empty: it holds no prompts.")
    code, output = _sample(tmp_path, "p.jsonl")
    assert code == 2 and "p.jsonl: the file is empty" in output


def test_header_only_csv_has_no_prompts(tmp_path):
    path = _write(tmp_path / "p.csv", "prompt\n")
    assert count_rows(path) == 0 and "the file is empty" in _error(path)


def test_missing_path_dir_unknown_type_and_corrupt_parquet(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert _error(missing).startswith(f"{missing}: no such file or directory.")
    (tmp_path / "folder").mkdir()
    assert _error(tmp_path / "folder").startswith(
        f"{tmp_path / 'folder'}: is a directory but not a dataset saved with save_to_disk"
    )
    text = _write(tmp_path / "p.txt", "hello")
    assert _error(text).startswith(f"{text}: unknown file type '.txt'. Use .jsonl")
    parquet = _write(tmp_path / "p.parquet", b"PAR1 this is not parquet at all PAR1")
    assert _error(parquet).startswith(f"{parquet}: not a readable Parquet file (")
    with pytest.raises(InputFormatError, match="not a readable Parquet file"):
        count_rows(parquet)
    code, output = _sample(tmp_path, "p.parquet")
    assert code == 2 and "p.parquet: not a readable Parquet file" in output


def test_truncated_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(1000)]}), path)
    path.write_bytes(path.read_bytes()[:-20])
    assert _error(path).startswith(f"{path}: not a readable Parquet file")


def test_save_to_disk_directory_and_parquet_are_read(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"prompt": "a"}, {"prompt": "b"}]).save_to_disk(str(tmp_path / "ds"))
    Dataset.from_list([{"prompt": "c"}]).to_parquet(str(tmp_path / "p.parquet"))
    assert [p.prompt[0]["content"] for p in iter_prompts(tmp_path / "ds")] == ["a", "b"]
    assert count_rows(tmp_path / "ds") == 2 and count_rows(tmp_path / "p.parquet") == 1


# ---- prompts: messages ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user"}], "row 2: messages[0].content: the message has no content"),
        (
            [{"role": "system", "content": "s"}, {"role": "user", "content": ["part"]}],
            "row 2: messages[1].content: the message content must be text, got array",
        ),
        (
            [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}],
            "row 2: messages[1].role: the message has role 'bot'. Use one of system, user, "
            "assistant.",
        ),
        ([{"content": "hi"}], "row 2: messages[0].role: the message has no role"),
        (["hi"], "row 2: messages[0]: a message must be an object, got string"),
        ([{"role": "assistant", "content": "x"}], "the conversation has no user turn"),
        ([], "row 2: messages: the prompt must be text or a list of"),
    ],
)
def test_bad_messages_name_file_row_and_message_index(tmp_path, messages, expected):
    path = _write(tmp_path / "p.jsonl", _jsonl({"prompt": "ok"}, {"messages": messages}))
    message = _error(path)
    assert message.startswith(f"{path}:2 ") and expected in message


def test_bad_message_fails_before_anything_is_sampled(tmp_path):
    rows = [{"prompt": f"q{i}"} for i in range(50)] + [{"messages": [{"role": "user"}]}]
    _write(tmp_path / "p.jsonl", _jsonl(*rows))
    code, output = _sample(tmp_path, "p.jsonl")
    assert (
        code == 2 and "p.jsonl:51 row 51: messages[0].content: the message has no content" in output
    )
    assert not list((tmp_path / "run").rglob("*.jsonl"))  # nothing was sampled
    with pytest.raises(InputFormatError, match="row 51"):
        count_prompts(tmp_path / "p.jsonl")


def test_conversation_in_a_csv_cell_and_trailing_answers(tmp_path):
    conversation = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "dropped"},
    ]
    path = write_csv([{"messages": conversation}], tmp_path / "p.csv", ["messages"])
    (prompt,) = iter_prompts(path)
    assert prompt.prompt == conversation[:2]


def test_prompt_column_errors(tmp_path):
    path = _write(tmp_path / "p.jsonl", _jsonl({"body": "hi"}))
    assert "row 1: no prompt column found (columns: body)" in _error(path)
    assert "row 1: no column 'query' (columns: body)" in _error(path, "query")
    assert [p.prompt[0]["content"] for p in iter_prompts(path, "body")] == ["hi"]
    path = _write(tmp_path / "q.jsonl", _jsonl({"prompt": "  "}))
    assert f"{path}:1 row 1: prompt: the prompt is empty" in _error(path)


# ---- counting agrees with reading -----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", b'\xef\xbb\xbfprompt\n"two\nlines"\n\nthree\r\n"x\r\ny"\r\n\n', 3),
        ("b.csv", b"prompt\ra\rb\r", 2),
        ("c.jsonl", b'\xef\xbb\xbf\n{"prompt": "a"}\n\n  \n{"prompt": "b"}', 2),
        ("d.jsonl", b'{"prompt": "a"}\r\n"not an object"\r\n\xff\n', 3),
        ("e.jsonl", b"\xef\xbb\xbf\n\n", 0),
        ("f.json", b'[{"prompt": "a"}, {"prompt": "b"}, 3]', 3),
    ],
)
def test_count_rows_agrees_with_the_reader(tmp_path, name, content, expected):
    path = _write(tmp_path / name, content)
    assert len(list(iter_rows(path))) == count_rows(path) == expected
    assert count_rows(path, limit=1) == min(1, expected)


def test_limit_stops_reading_early(tmp_path):
    path = _write(tmp_path / "p.jsonl", _jsonl({"prompt": "a"}, {"prompt": "b"}, "not json"))
    assert [p.prompt[0]["content"] for p in iter_prompts(path, limit=2)] == ["a", "b"]
    assert list(iter_prompts(path, limit=0)) == []


# ---- the same inputs through the CLI: exit 2, one line, no traceback ------------------------
CLI_CASES = [
    ("p.jsonl", b'{"prompt": "ok"}\n{"prompt": "\xff"}\n', "p.jsonl:2 row 2: not UTF-8 text"),
    ("p.csv", b"prompt\nok\n\xfe\n", "p.csv:3 row 2: not UTF-8 text: byte 0xfe"),
    ("p.jsonl", b'{"prompt": "ok"}\n"text"\n', "p.jsonl:2 row 2: a line must hold one JSON"),
    ("p.jsonl", b"7\n", "p.jsonl:1 row 1: a line must hold one JSON object {...}, not a JSON num"),
    ("p.jsonl", b"[" * 50_000 + b"\n", "p.jsonl:1 row 1: not valid JSON (nested too deeply"),
    ("p.csv", b"prompt\nhi,there\n", "p.csv:2 row 1: 2 fields, more than the header's 1 column"),
    ("p.csv", b"prompt,id\nhi\n", "p.csv:2 row 1: 1 field, fewer than the header's 2 columns"),
    ("p.jsonl", b"  \n\n", "p.jsonl: the file is empty: it holds no prompts"),
    ("p.csv", b"\xef\xbb\xbfprompt\n", "p.csv: the file is empty: it holds no prompts"),
    ("p.jsonl", b'{"messages": [{"role": "user", "content": 5}]}\n', "row 1: messages[0].content"),
    ("p.jsonl", b'{"messages": [{"role": "robot", "content": "x"}]}\n', "messages[0].role: the"),
    ("p.parquet", b"not parquet", "p.parquet: not a readable Parquet file"),
    ("p.tsv", b"prompt\n", "p.tsv: unknown file type '.tsv'"),
    ("p.json", b"[1,\n", "p.json:2:1: not valid JSON"),
]


@pytest.mark.parametrize(("name", "content", "expected"), CLI_CASES)
def test_cli_reports_each_bad_prompts_file_in_one_line(tmp_path, name, content, expected):
    _write(tmp_path / name, content)
    code, output = _sample(tmp_path, name)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, output
    assert errors[0].startswith(f"error: {tmp_path / name}") and expected in errors[0]


def test_cli_reports_missing_file_and_plain_directory(tmp_path):
    code, output = _sample(tmp_path, "missing.jsonl")
    assert code == 2 and f"{tmp_path / 'missing.jsonl'}: no such file or directory" in output
    (tmp_path / "folder").mkdir()
    code, output = _sample(tmp_path, "folder")
    assert (
        code == 2 and "folder: is a directory but not a dataset saved with save_to_disk" in output
    )


def test_cli_reads_a_bom_csv_of_prompts(tmp_path):
    _write(tmp_path / "p.csv", "\ufeffprompt\nHello there?\n")
    code, output = _sample(tmp_path, "p.csv")
    assert code == 0, output
    assert [p.prompt[0]["content"] for p in iter_prompts(tmp_path / "p.csv")] == ["Hello there?"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rows.jsonl", '{"prompt": "a"}\n{"prompt": "b", "prompt": "c"}\n'),
        ("rows.json", '[{"prompt": "a"}, {"prompt": "b", "nested": {"x": 1, "x": 2}}]'),
    ],
)
def test_a_json_key_given_twice_is_refused_not_silently_collapsed(tmp_path, name, text):
    from cai.tables import iter_rows, read_rows

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CaiError, match="is given twice in the same object") as info:
        read_rows(path)
    assert "not valid JSON (key " in str(info.value)
    if name.endswith(".jsonl"):  # one bad line is that row's error; the others still read
        rows = list(iter_rows(path))
        assert rows[0].data == {"prompt": "a"}
        assert isinstance(rows[1].data, CaiError) and rows[1].line == 2
