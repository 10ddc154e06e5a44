"""SFT / preference dataset writing and reading in every format, empty splits included."""

from __future__ import annotations

import pytest

from cai.errors import OutputDirError
from cai.sft_data import (
    load_split,
    preference_schema_example,
    revision_preferences,
    write_splits,
)
from cai.tables import InputFormatError


def _row(i: int, final: str, flags: list[str] | None = None) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": final},
        ],
        "prompt_id": f"p{i}",
        "initial_response": f"initial {i}",
        "principles": ["harm", "honesty"],
        "flags": flags or [],
        "policy_model": "m",
        "constitution_name": "c",
        "constitution_hash": "h",
    }


@pytest.mark.parametrize("fmt", ["disk", "parquet", "jsonl"])
def test_splits_round_trip(tmp_path, fmt):
    rows = [_row(0, "better 0"), _row(1, "better 1")]
    flagged = [_row(2, "", ["empty_revision"])]
    directory = write_splits({"train": rows, "flagged": flagged}, tmp_path / "sft", fmt, card="# c")
    train = load_split(directory)
    assert train["messages"] == [r["messages"] for r in rows]
    assert load_split(directory, "flagged")["flags"] == [["empty_revision"]]
    assert (directory / "README.md").read_text() == "# c"
    with pytest.raises(InputFormatError, match=r"no split 'test'|no 'test' split"):
        load_split(directory, "test")


@pytest.mark.parametrize("fmt", ["disk", "parquet", "jsonl"])
def test_empty_train_split_stays_loadable(tmp_path, fmt):
    directory = write_splits(
        {"train": []}, tmp_path / "prefs", fmt, schema_example=preference_schema_example()
    )
    assert len(load_split(directory)) == 0


def test_rewrite_replaces_but_refuses_foreign_files(tmp_path):
    target = tmp_path / "sft"
    write_splits({"train": [_row(0, "a"), _row(1, "b")]}, target, "jsonl")
    write_splits({"train": [_row(0, "a")]}, target, "parquet")
    assert not (target / "train.jsonl").exists() and len(load_split(target)) == 1
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"notes\.txt.*which cai did not write"):
        write_splits({"train": []}, target, "jsonl")
    assert (target / "notes.txt").read_text() == "mine"


def test_revision_preferences_mark_provenance_and_skip_pairs_without_a_difference():
    rows = [
        _row(0, "better 0"),
        _row(1, "initial 1"),  # final == initial: nothing to prefer
        _row(2, "", ["empty_revision"]),
        _row(3, "better 3", ["critique_leak"]),  # flagged but still a real difference
    ]
    pairs, skipped = revision_preferences(rows, prob_chosen=0.9)
    assert skipped == 2
    assert [p["prompt_id"] for p in pairs] == ["p0", "p3"]
    pair = pairs[0]
    assert pair["prompt"] == [{"role": "user", "content": "q0"}]
    assert pair["chosen"] == [{"role": "assistant", "content": "better 0"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "initial 0"}]
    assert (pair["method"], pair["n_judgments"], pair["prob_chosen"]) == ("revision", 0, 0.9)
    assert pair["principles"] == ["harm", "honesty"] and pair["constitution_hash"] == "h"
    assert "margin" not in pair


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(InputFormatError, match="nope: no such file or directory"):
        load_split(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputFormatError, match=r"unknown file type '\.txt'"):
        load_split(tmp_path / "x.txt")
