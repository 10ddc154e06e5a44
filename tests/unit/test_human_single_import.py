"""Importing thumbs up/down on single answers: good rows, malformed rows by number, the CLI."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from cai.cli.app import app
from cai.human.imports import import_human
from cai.records import stable_id
from cai.tables import read_rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _kinds(issues):
    return [(issue.row, issue.kind) for issue in issues]


def test_thumbs_rows_become_unpaired_rows(tmp_path):
    path = _jsonl(
        tmp_path / "thumbs.jsonl",
        [
            {"prompt": "Say hi.", "response": "Hello!", "thumbs": "up", "rater": "r1"},
            {"prompt": "Say hi.", "response": "Go away.", "thumbs": "👎"},
        ],
    )
    rows, report = import_human(path, rater_id="team")
    prompt = [{"role": "user", "content": "Say hi."}]
    assert rows[0] == {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": "Hello!"}],
        "label": True,
        "prompt_id": stable_id(prompt),
        "completion_id": stable_id(prompt, "Hello!"),
        "source": "human",
        "method": "human-import",
        "pair_id": None,
        "pair_confidence": None,
        "rater_id": "r1",
    }
    assert (rows[1]["label"], rows[1]["rater_id"]) == (False, "team")
    assert report.format == "single"
    assert (report.n_imported, report.n_up, report.n_down) == (2, 1, 1)
    assert report.columns_mapped == {
        "response": "completion",
        "thumbs": "label",
        "rater": "rater_id",
    }


def test_malformed_and_unlabelled_rows_are_reported_by_row(tmp_path):
    path = _jsonl(
        tmp_path / "thumbs.jsonl",
        [
            {"prompt": "q1", "completion": "fine", "label": 1},
            {"prompt": "q2", "label": "up"},  # no response
            {"prompt": "q3", "completion": "meh", "label": "maybe"},
            {"prompt": " ", "completion": "x", "label": "down"},  # empty prompt
            {"prompt": "q5", "completion": "later", "label": ""},  # nobody rated it yet
            {"prompt": "q6", "completion": "  ", "label": "up"},  # empty response
            {"prompt": "q7", "completion": "no", "label": False},
        ],
    )
    rows, report = import_human(path, format="single")
    assert [(r["prompt"][0]["content"], r["label"]) for r in rows] == [("q1", True), ("q7", False)]
    assert _kinds(report.errors) == [
        (2, "malformed"),
        (3, "malformed"),
        (4, "malformed"),
        (6, "malformed"),
    ]
    assert _kinds(report.flagged) == [(5, "unlabelled")]
    details = {issue.row: issue.detail for issue in report.errors + report.flagged}
    assert "missing column(s) ['completion']" in details[2]
    assert details[3].startswith("label='maybe' is not a thumbs up/down; use up / down")
    assert details[4] == "the prompt is empty"
    assert details[5].startswith("no thumbs up/down yet")
    assert details[6] == "the response is empty"
    summary = report.summary()
    assert summary.startswith(
        f"{path} (single): 7 rows read, 2 imported (1 up, 1 down), 4 malformed"
    )
    assert "  row 3: malformed: label='maybe'" in summary


def test_csv_labels_zero_one_true_false(tmp_path):
    path = tmp_path / "votes.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question", "Answer", "Thumbs Up"])
        writer.writerows([["a?", "yes", "1"], ["b?", "no", "0"], ["c?", "ok", "TRUE"]])
    rows, report = import_human(path)
    assert report.format == "single" and not report.errors
    assert [(r["prompt"][0]["content"], r["label"]) for r in rows] == [
        ("a?", True),
        ("b?", False),
        ("c?", True),
    ]


def test_a_star_rating_column_is_not_read_as_thumbs(tmp_path):
    path = _jsonl(tmp_path / "stars.jsonl", [{"prompt": "q", "response": "a", "rating": 1}])
    rows, report = import_human(path)
    assert rows == [] and report.errors[0].detail.startswith("cannot tell the format")


def test_cli_writes_the_unpaired_rows_kto_reads(tmp_path):
    source = _jsonl(
        tmp_path / "thumbs.jsonl",
        [
            {"prompt": "q1", "response": "good", "thumbs": "up"},
            {"prompt": "q2", "response": "bad", "thumbs": "down"},
            {"prompt": "q3", "response": "eh", "thumbs": "maybe"},
        ],
    )
    out = tmp_path / "unpaired.jsonl"
    result = CliRunner().invoke(app, ["import-human", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 human unpaired (thumbs up/down) rows" in result.output
    assert [(r["completion"][0]["content"], r["label"]) for r in read_rows(out)] == [
        ("good", True),
        ("bad", False),
    ]
    strict = tmp_path / "strict.jsonl"
    result = CliRunner().invoke(
        app, ["import-human", str(source), "--out", str(strict), "--format", "single", "--strict"]
    )
    assert result.exit_code == 1 and not strict.exists()
    assert "not written: 1 malformed row(s) and --strict" in result.output


def test_cli_a_file_with_no_usable_thumbs_is_one_error(tmp_path):
    source = _jsonl(
        tmp_path / "thumbs.jsonl", [{"prompt": "q", "response": "a", "thumbs": "maybe"}]
    )
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["import-human", str(source), "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert (
        "its one row could not be imported: 1 malformed (e.g. row 1: label='maybe'" in result.output
    )
    assert "Traceback" not in result.output
