"""Pairs split into thumbs up/down answers, unpaired rows checked as read, and KTO's row order."""

from __future__ import annotations

import json
import math

import pytest

from cai.errors import InputError
from cai.human.thumbs import ThumbError, parse_thumb
from cai.records import stable_id
from cai.train.unpaired import alternate_labels, checked_unpaired, unpair_preferences


def _msgs(role, text):
    return [{"role": role, "content": text}]


def pair(prompt, chosen, rejected, p=None, **extra):
    row = {
        "prompt": _msgs("user", prompt),
        "chosen": _msgs("assistant", chosen),
        "rejected": _msgs("assistant", rejected),
        **extra,
    }
    if p is not None:
        row["prob_chosen"] = p
    return row


def _texts(rows):
    return [(r["completion"][0]["content"], r["label"]) for r in rows]


@pytest.mark.parametrize(
    "value",
    ["up", "Up", " thumbs up ", "thumbs-up", "THUMBS_UP", "👍", "👍️", "👍🏽", "true", "1", 1, True],
)
def test_thumbs_up_spellings(value):
    assert parse_thumb(value) is True


@pytest.mark.parametrize("value", ["down", "thumbs down", "👎", "False", "0", 0, 0.0, False])
def test_thumbs_down_spellings(value):
    assert parse_thumb(value) is False


@pytest.mark.parametrize("value", [None, "", "  ", math.nan])
def test_an_empty_cell_is_not_rated_yet(value):
    assert parse_thumb(value) is None


@pytest.mark.parametrize("value", ["maybe", "3", 2, -1, 0.5, "yes please", "👌"])
def test_anything_else_is_refused_with_the_spellings(value):
    with pytest.raises(ThumbError, match="is not a thumbs up/down; use up / down"):
        parse_thumb(value)


def test_a_pair_becomes_a_desirable_and_an_undesirable_answer():
    rows, report = unpair_preferences(
        [pair("Say hi.", "Hello!", "Go away.", 0.8, pair_id="p1", source="human", rater_id="r")]
    )
    prompt = _msgs("user", "Say hi.")
    assert rows == [
        {
            "prompt": prompt,
            "completion": _msgs("assistant", "Hello!"),
            "label": True,
            "prompt_id": stable_id(prompt),
            "completion_id": stable_id(prompt, "Hello!"),
            "source": "human",
            "method": "unpaired",
            "pair_id": "p1",
            "pair_confidence": 0.8,
            "rater_id": "r",
        },
        {
            "prompt": prompt,
            "completion": _msgs("assistant", "Go away."),
            "label": False,
            "prompt_id": stable_id(prompt),
            "completion_id": stable_id(prompt, "Go away."),
            "source": "human",
            "method": "unpaired",
            "pair_id": "p1",
            "pair_confidence": 0.8,
            "rater_id": "r",
        },
    ]
    assert (report.n_pairs, report.n_desirable, report.n_undesirable) == (1, 1, 1)


def test_soft_labels_ties_and_low_confidence():
    rows, report = unpair_preferences(
        [
            pair("q1", "worse", "better", 0.3),  # the label says `rejected` is the better one
            pair("q2", "a", "b", 0.5),  # a tie prefers neither
            pair("q3", "c", "d", 0.55),  # closer to 0.5 than min_confidence
            pair("q4", "same", "same", 0.9),
            pair("q5", "e", "f", 0.65),  # |0.65 - 0.5| = 0.15 >= 0.1: kept
        ],
        min_confidence=0.1,
    )
    assert _texts(rows) == [("better", True), ("worse", False), ("e", True), ("f", False)]
    assert rows[0]["pair_confidence"] == pytest.approx(0.7)
    assert report.pairs_dropped == {"tie": 1, "low_confidence": 1, "same_text": 1}
    assert report.n_pairs == 5


def test_an_answer_in_several_pairs_is_kept_once_or_dropped_when_they_disagree():
    # all pairs of a ranking A > B > C: A always wins, C always loses, B wins once and loses once
    rows, report = unpair_preferences(
        [pair("q", "A", "B", 0.9), pair("q", "A", "C", 0.9), pair("q", "B", "C", 0.7)]
    )
    assert _texts(rows) == [("A", True), ("C", False)]
    assert (report.answers_merged, report.answers_conflicting) == (2, 1)
    assert (report.n_desirable, report.n_undesirable) == (1, 1)


def test_plain_text_trl_pairs_keep_their_form():
    rows, _ = unpair_preferences([{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}])
    assert [(r["prompt"], r["completion"], r["label"]) for r in rows] == [
        ("Say hi.", "Hi!", True),
        ("Say hi.", "No.", False),
    ]
    assert rows[0]["pair_confidence"] == 1.0 and rows[0]["source"] == "ai"
    assert rows[0]["completion_id"] == stable_id(_msgs("user", "Say hi."), "Hi!")


def test_bad_pairs_name_the_source_and_row():
    good = pair("q", "a", "b", 0.9)
    with pytest.raises(InputError, match=r"prefs\.jsonl row 2: the pair has no prompt") as err:
        unpair_preferences([good, {"chosen": "x", "rejected": "y"}], where="prefs.jsonl")
    assert "cai import-human --format trl" in str(err.value)
    with pytest.raises(InputError, match=r"row 1: prob_chosen='high' is not a probability"):
        unpair_preferences([pair("q", "a", "b", "high")], where="prefs.jsonl")
    with pytest.raises(InputError, match=r"row 1: source: Input should be 'ai' or 'human'"):
        unpair_preferences([pair("q", "a", "b", 0.9, source="robot")], where="prefs.jsonl")


def test_labels_alternate_and_neighbours_come_from_other_pairs():
    rows, _ = unpair_preferences([pair(f"q{i}", f"up{i}", f"down{i}", 0.9) for i in range(4)])
    names = [r["completion"][0]["content"] for r in alternate_labels(rows)]
    assert names == ["up0", "down2", "up1", "down3", "up2", "down0", "up3", "down1"]


def test_alternating_keeps_every_row_when_one_side_is_longer():
    rows = [{"id": i, "label": label} for i, label in enumerate([True, True, True, False])]
    assert [r["id"] for r in alternate_labels(rows)] == [0, 3, 1, 2]


def test_read_unpaired_rows_get_bool_labels_and_messages_back():
    prompt = _msgs("user", "Hi?")
    rows = checked_unpaired(
        [
            {"prompt": json.dumps(prompt), "completion": "Hello.", "label": "true"},
            {"prompt": "Hi?", "completion": "Go.", "label": "👎"},
            {"prompt": "Hi?", "completion": "Hey.", "label": 1},
        ],
        "thumbs.csv",
    )
    assert [r["label"] for r in rows] == [True, False, True]
    assert rows[0]["prompt"] == prompt and rows[1]["prompt"] == "Hi?"


@pytest.mark.parametrize(
    "row,message",
    [
        ({"prompt": "q", "completion": "a", "label": "maybe"}, "label: 'maybe' is not a thumbs"),
        ({"prompt": "q", "completion": "", "label": "up"}, "missing completion"),
        ({"prompt": "q", "completion": "a", "label": " "}, "the label is empty"),
    ],
)
def test_bad_unpaired_rows_name_the_file_and_row(row, message):
    good = {"prompt": "q", "completion": "a", "label": True}
    with pytest.raises(InputError, match=rf"thumbs\.csv row 2: {message}"):
        checked_unpaired([good, row], "thumbs.csv")
