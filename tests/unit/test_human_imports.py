"""Importing human labels: each format with good and malformed rows, flags counted by row."""

from __future__ import annotations

import csv
import json

import pytest

from cai.human import pair_key
from cai.human.imports import import_human, parse_hh_transcript
from cai.records import PreferenceRow, stable_id


def _jsonl(path, rows):
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row if isinstance(row, str) else json.dumps(row))
            handle.write("\n")
    return path


def _csv(path, header, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _kinds(issues):
    return [(i.row, i.kind) for i in issues]


def test_pair_key_ignores_response_order_and_matches_stable_id():
    prompt = [{"role": "user", "content": "hi"}]
    assert pair_key(prompt, "x", "y") == pair_key(prompt, "y", "x")
    assert pair_key(prompt, "x", "y") == stable_id(prompt, ["x", "y"])
    assert pair_key("hi", "x", "y") == pair_key(prompt, "x", "y")  # text = one user turn
    assert pair_key(json.dumps(prompt), "x", "y") == pair_key(prompt, "x", "y")  # CSV cell
    assert pair_key(prompt, "x", "y") != pair_key(prompt, "x", "z")


def test_trl_conversational_standard_and_implicit_prompt(tmp_path):
    user = {"role": "user", "content": "Is the sky blue?"}
    good = [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": "Yes, by day."}],
            "rejected": [{"role": "assistant", "content": "No."}],
            "rater_id": "r7",
        },
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."},
        {  # implicit prompt: the shared turns are split off
            "chosen": [user, {"role": "assistant", "content": "Yes."}],
            "rejected": [user, {"role": "assistant", "content": "Purple."}],
        },
        {"prompt": "Pick.", "chosen": "worse", "rejected": "better", "prob_chosen": 0.2},
    ]
    bad = [
        "{not json",
        {"prompt": "x", "chosen": "a"},  # no rejected
        {  # two assistant messages in one response
            "prompt": "x",
            "chosen": [
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": "b"},
            ],
            "rejected": [{"role": "assistant", "content": "c"}],
        },
        {"prompt": "x", "chosen": "same", "rejected": "same"},
        {"prompt": "x", "chosen": "a", "rejected": "b", "prob_chosen": 2},
    ]
    rows, report = import_human(_jsonl(tmp_path / "trl.jsonl", good + bad))
    assert report.format == "trl"
    assert report.n_rows == 9 and report.n_imported == 4
    assert _kinds(report.errors) == [
        (5, "malformed"),
        (6, "malformed"),
        (7, "malformed"),
        (9, "malformed"),
    ]
    assert _kinds(report.flagged) == [(8, "chosen_equals_rejected")]
    assert "rejected" in report.errors[1].detail
    for row in rows:
        PreferenceRow.model_validate(row)
        assert row["source"] == "human" and row["method"] == "human-import"
    assert rows[0]["prompt"] == [user] and rows[0]["rater_id"] == "r7"
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "Yes, by day."}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Say hi."}]
    assert rows[2]["prompt"] == [user] and rows[2]["rejected"][0]["content"] == "Purple."
    # prob_chosen 0.2 means the other response is better: swapped to keep chosen the winner
    assert rows[3]["chosen"][0]["content"] == "better" and rows[3]["prob_chosen"] == pytest.approx(
        0.8
    )
    assert rows[1]["pair_id"] == pair_key("Say hi.", "Hi!", "Go away.")
    assert rows[1]["prompt_id"] == stable_id([{"role": "user", "content": "Say hi."}])


def test_hh_transcripts_split_off_the_shared_prompt(tmp_path):
    shared = (
        "\n\nHuman: How do I bake bread?\n\nAssistant: Flour, water, yeast.\n\nHuman: And salt?"
    )
    good = {
        "chosen": shared + "\n\nAssistant: Yes, a pinch.",
        "rejected": shared + "\n\nAssistant: No idea.",
    }
    unaligned = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant: Bye!",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Go away\n\nHuman: Bye\n\nAssistant: Whatever.",
    }
    same = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hey",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hey",
    }
    not_hh = {"chosen": "Human said hi", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"}
    no_answer = {"chosen": "\n\nHuman: Hi", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"}
    path = _jsonl(tmp_path / "hh.jsonl", [good, unaligned, same, not_hh, no_answer])
    rows, report = import_human(path)
    assert report.format == "hh"
    assert report.n_imported == 1
    assert rows[0]["prompt"] == [
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "Flour, water, yeast."},
        {"role": "user", "content": "And salt?"},
    ]
    assert rows[0]["chosen"][0]["content"] == "Yes, a pinch."
    assert rows[0]["rejected"][0]["content"] == "No idea."
    assert _kinds(report.flagged) == [(2, "unalignable_prompt"), (3, "chosen_equals_rejected")]
    assert "turn 2" in report.flagged[0].detail
    assert _kinds(report.errors) == [(4, "malformed"), (5, "malformed")]
    assert report.flag_counts() == {"unalignable_prompt": 1, "chosen_equals_rejected": 1}


def test_parse_hh_keeps_multiline_content():
    messages = parse_hh_transcript("\n\nHuman: line one\nline two\n\nAssistant: ok")
    assert messages == [
        {"role": "user", "content": "line one\nline two"},
        {"role": "assistant", "content": "ok"},
    ]


def test_pairwise_table_labels_probabilities_raters_and_errors(tmp_path):
    header = ["prompt", "response_a", "response_b", "label", "prob_a", "rater_id"]
    path = _csv(
        tmp_path / "table.csv",
        header,
        [
            ["Q1", "good", "bad", "a", "", "ann"],
            ["Q2", "bad", "good", "B", "", "bob"],
            ["Q3", "left", "right", "tie", "", ""],
            ["Q4", "x", "y", "", "0.25", "ann"],
            ["Q5", "x", "y", "maybe", "", ""],  # bad label
            ["Q6", "x", "y", "", "1.5", ""],  # probability out of range
            ["Q7", "same", "same", "a", "", ""],
            ["Q8", "x", "y", "", "", ""],  # not labelled yet
            ["", "x", "y", "a", "", ""],  # empty prompt
            ["Q10", "x", " ", "a", "", ""],  # empty response
        ],
    )
    rows, report = import_human(path, rater_id="default-rater")
    assert report.format == "table"
    assert report.n_rows == 10 and report.n_imported == 4 and report.n_ties == 1
    assert _kinds(report.errors) == [
        (5, "malformed"),
        (6, "malformed"),
        (9, "malformed"),
        (10, "malformed"),
    ]
    assert "empty" in report.errors[3].detail
    assert "maybe" in report.errors[0].detail and "1.5" in report.errors[1].detail
    assert _kinds(report.flagged) == [(7, "chosen_equals_rejected"), (8, "unlabelled")]
    by_prompt = {r["prompt"][0]["content"]: r for r in rows}
    assert (
        by_prompt["Q1"]["chosen"][0]["content"] == "good" and by_prompt["Q1"]["prob_chosen"] == 1.0
    )
    assert (
        by_prompt["Q2"]["chosen"][0]["content"] == "good" and by_prompt["Q2"]["rater_id"] == "bob"
    )
    assert by_prompt["Q3"]["prob_chosen"] == 0.5 and by_prompt["Q3"]["rater_id"] == "default-rater"
    assert by_prompt["Q4"]["chosen"][0]["content"] == "y"
    assert by_prompt["Q4"]["prob_chosen"] == pytest.approx(0.75)
    assert report.errors[0].raw["label"] == "maybe"  # the bad row is kept in the report


def test_table_missing_column_and_format_errors(tmp_path):
    path = _csv(tmp_path / "t.csv", ["prompt", "response_a", "label"], [["Q", "x", "a"]])
    rows, report = import_human(path, format="table")
    assert rows == [] and _kinds(report.errors) == [(1, "malformed")]
    assert "response_b" in report.errors[0].detail
    rows, report = import_human(_jsonl(tmp_path / "u.jsonl", [{"question": "?"}]))
    assert rows == [] and "cannot tell the format" in report.errors[0].detail
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unknown file type '\.txt'"):
        import_human(tmp_path / "t.txt")
    with pytest.raises(ValueError, match="no such file"):
        import_human(tmp_path / "missing.jsonl")


def test_column_aliases_are_mapped_per_format_and_reported(tmp_path):
    from cai.human.imports import canonical_columns

    columns = canonical_columns(
        {"Prompt": "q", "answer_a": "x", "Answer-B": "y", "winner": "model_b", "worker_id": "w1"},
        "table",
    )
    assert columns.row == {
        "prompt": "q",
        "response_a": "x",
        "response_b": "y",
        "label": "model_b",
        "rater_id": "w1",
    }
    assert columns.mapped == {
        "Prompt": "prompt",
        "answer_a": "response_a",
        "Answer-B": "response_b",
        "winner": "label",
        "worker_id": "rater_id",
    }
    # the own name wins; a second name for the same column is reported, not silently used
    both = canonical_columns({"rater_id": "r", "rater": "s", "chosen": "c", "x": 1}, "trl")
    assert both.row == {"rater_id": "r", "chosen": "c"} and both.unknown == ["rater", "x"]
    assert canonical_columns({"winner": "text"}, "trl").row == {"chosen": "text"}

    path = _jsonl(
        tmp_path / "arena.jsonl",
        [
            {
                "question": "Q1",
                "answer_a": "x",
                "answer_b": "y",
                "winner": "model_b",
                "labeler": "l",
            },
            {"question": "Q2", "answer_a": "x", "answer_b": "y", "winner": "tie (bothbad)"},
        ],
    )
    rows, report = import_human(path)
    assert report.format == "table" and report.n_imported == 2 and report.n_ties == 1
    assert rows[0]["chosen"][0]["content"] == "y" and rows[0]["rater_id"] == "l"
    assert report.columns_mapped == {
        "question": "prompt",
        "answer_a": "response_a",
        "answer_b": "response_b",
        "winner": "label",
        "labeler": "rater_id",
    }
    assert report.unknown_columns == {}
    assert "columns read as: question -> prompt" in report.summary()


def test_non_text_message_content_and_huge_numbers_are_malformed_rows(tmp_path):
    path = _jsonl(
        tmp_path / "t.jsonl",
        [
            {"prompt": [{"role": "user", "content": 3}], "chosen": "a", "rejected": "b"},
            {"prompt": "q", "chosen": [{"role": "assistant", "content": None}], "rejected": "b"},
            {"prompt": "q", "chosen": "a", "rejected": "b", "prob_chosen": 10**400},
            {"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"},
            {"prompt": "fine", "chosen": "a", "rejected": "b"},
        ],
    )
    rows, report = import_human(path)
    assert len(rows) == 1 and _kinds(report.errors) == [(i, "malformed") for i in (1, 2, 3, 4)]
    details = [e.detail for e in report.errors]
    assert "prompt message 0 content must be text (got int)" in details[0]
    assert "a response's content must be text (got NoneType)" in details[1]
    assert "is not a number" in details[2]
    assert "prompt message 0 has role 'robot'" in details[3]
