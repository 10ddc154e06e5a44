"""Routing uncertain pairs to people: scores by hand, and the route -> label -> import trip."""

from __future__ import annotations

import csv
import json

import pytest

from cai.human import pair_key
from cai.human.agreement import compute_agreement
from cai.human.pairs import prompt_messages
from cai.human.routing import RoutingConfig, export_for_labelling, import_labels, uncertainty


def pref(prompt, chosen, rejected, p, **extra):
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt,
        "pair_id": pair_key(prompt, chosen, rejected),
        "prob_chosen": p,
        "source": "ai",
        **extra,
    }


MULTI_TURN = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Tell me a joke."},
]
AI = [
    pref("sure", "yes", "no", 1.0, orders_agree=True),  # score 0
    pref("coin", "heads", "tails", 0.5, orders_agree=True),  # 1.0
    pref("flip", "left", "right", 0.9, orders_agree=False),  # 0.2 + 1 = 1.2
    pref("orders", "up", "down", 0.8, prob_chosen_by_order=[0.9, 0.2]),  # 0.4 + 0.7 = 1.1
    pref("split", "red", "blue", 0.7, prob_chosen_by_principle=[0.8, 0.2, 0.9, 0.1]),  # 0.6 + 1 = 1.6
]
AI[1]["prompt"] = MULTI_TURN
AI[1]["pair_id"] = pair_key(MULTI_TURN, "heads", "tails")


def test_uncertainty_signals_by_hand():
    config = RoutingConfig(budget=1)
    scores = [uncertainty(row, config) for row in AI]
    assert [round(s.score, 6) for s in scores] == [0.0, 1.0, 1.2, 1.1, 1.6]
    assert scores[3].orders == pytest.approx(0.7) and scores[4].principles == pytest.approx(1.0)
    weighted = uncertainty(AI[2], RoutingConfig(budget=1, weight_orders=0.5))
    assert weighted.score == pytest.approx(0.2 + 0.5)


def _fill(path, labels):
    """What a person does: fill in `label` and `rater_id` in the exported sheet.
    `labels` maps the last user turn to the response the person prefers."""
    if path.suffix == ".jsonl":
        items = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        with path.open(newline="") as handle:
            items = list(csv.DictReader(handle))
    for item in items:
        pick = labels.get(prompt_messages(item["prompt"])[-1]["content"])
        if pick is not None:
            item["label"] = "a" if item["response_a"] == pick else "b"
            item["rater_id"] = "ann"
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(i) + "\n" for i in items))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(items[0]))
            writer.writeheader()
            writer.writerows(items)
    return items


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_route_label_import_round_trip(tmp_path, suffix):
    sheet = tmp_path / f"to_label{suffix}"
    report = export_for_labelling(AI, sheet, RoutingConfig(budget=3, seed=1))
    assert report.n_selected == 3 and report.n_candidates == 5
    assert [s.item_id for s in report.selected] == [
        AI[4]["pair_id"],
        AI[2]["pair_id"],
        AI[3]["pair_id"],
    ]
    # the person prefers "blue" (against the AI), "left" (with it) and leaves "orders" unlabelled
    items = _fill(sheet, {"split": "blue", "flip": "left"})
    assert all(set(i) >= {"item_id", "prompt", "response_a", "response_b", "label"} for i in items)
    rows, imported = import_labels(sheet)
    assert imported.n_rows == 3 and imported.n_imported == 2 and not imported.errors
    assert [(i.row, i.kind) for i in imported.flagged] == [(3, "unlabelled")]
    by_prompt = {r["prompt"][0]["content"]: r for r in rows}
    assert by_prompt["split"]["chosen"][0]["content"] == "blue"
    assert by_prompt["flip"]["chosen"][0]["content"] == "left"
    assert by_prompt["split"]["pair_id"] == AI[4]["pair_id"]
    assert all(r["source"] == "human" and r["rater_id"] == "ann" for r in rows)
    agreement = compute_agreement(AI, rows)
    assert agreement.n_pairs == 2 and agreement.accuracy == pytest.approx(0.5)


def test_multi_turn_prompt_round_trips(tmp_path):
    sheet = tmp_path / "coin.csv"
    export_for_labelling(AI[1:2], sheet, RoutingConfig(budget=5))
    _fill(sheet, {"Tell me a joke.": "tails"})
    rows, report = import_labels(sheet)
    assert report.n_imported == 1
    assert rows[0]["prompt"] == MULTI_TURN and rows[0]["chosen"][0]["content"] == "tails"
    assert rows[0]["pair_id"] == AI[1]["pair_id"]


def test_export_skips_labelled_pairs_and_respects_min_score(tmp_path):
    labelled = [pref("flip", "right", "left", 1.0, source="human")]
    report = export_for_labelling(
        AI, tmp_path / "s.jsonl", RoutingConfig(budget=10, min_score=1.05), labelled
    )
    assert report.n_already_labelled == 1
    assert [s.item_id for s in report.selected] == [AI[4]["pair_id"], AI[3]["pair_id"]]


def test_positions_are_shuffled_reproducibly(tmp_path):
    many = [pref(f"q{i}", f"chosen{i}", f"rejected{i}", 0.6) for i in range(40)]
    first = export_for_labelling(many, tmp_path / "a.jsonl", RoutingConfig(budget=40, seed=3))
    export_for_labelling(many, tmp_path / "b.jsonl", RoutingConfig(budget=40, seed=3))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    items = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    shown_first = sum(i["response_a"].startswith("chosen") for i in items)
    assert first.n_selected == 40 and 5 < shown_first < 35  # the AI's choice is not always "a"


def test_edited_item_is_an_error_not_a_silent_label(tmp_path):
    sheet = tmp_path / "s.jsonl"
    export_for_labelling(AI, sheet, RoutingConfig(budget=1))
    item = json.loads(sheet.read_text())
    item["response_a"] += " (edited)"
    item["label"] = "a"
    sheet.write_text(json.dumps(item) + "\n")
    rows, report = import_labels(sheet)
    assert rows == [] and [(i.row, i.kind) for i in report.errors] == [(1, "malformed")]
    assert "edited" in report.errors[0].detail


def test_crlf_from_spreadsheets_and_json_like_prompts_still_match(tmp_path):
    ai = [
        pref("two\nlines", "first\nanswer", "second", 0.5),
        pref('["not", "messages"]', "x", "y", 0.5),
    ]
    sheet = tmp_path / "s.jsonl"
    export_for_labelling(ai, sheet, RoutingConfig(budget=2))
    items = [json.loads(line) for line in sheet.read_text().splitlines()]
    for item in items:
        item["label"] = "a"
        item["response_a"] = item["response_a"].replace("\n", "\r\n")
        if isinstance(item["prompt"], str):
            item["prompt"] = item["prompt"].replace("\n", "\r\n")
    sheet.write_text("".join(json.dumps(i) + "\n" for i in items))
    rows, report = import_labels(sheet)
    assert report.n_imported == 2 and not report.errors
    assert {r["pair_id"] for r in rows} == {r["pair_id"] for r in ai}
    assert {r["prompt"][0]["content"] for r in rows} == {"two\nlines", '["not", "messages"]'}


def test_export_rejects_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"as \.jsonl or \.csv"):
        export_for_labelling(AI, tmp_path / "s.parquet", RoutingConfig(budget=1))
