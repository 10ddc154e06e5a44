"""What `cai train kto` and `cai train orpo` read, checked with no model loaded."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.errors import InputError
from cai.train.kto import load_kto_dataset
from cai.train.orpo import load_orpo_dataset


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def pair(prompt, chosen, rejected, p, **extra):
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prob_chosen": p,
        "pair_id": f"id-{prompt}",
        "principles": ["harmless"],
        **extra,
    }


def _completions(dataset):
    return [(row["completion"][0]["content"], row["label"]) for row in dataset]


def test_kto_reads_a_preference_dataset_as_answers_in_alternating_order(tmp_path):
    data = _jsonl(
        tmp_path / "prefs.jsonl",
        [pair("q1", "a1", "b1", 0.9), pair("q2", "a2", "b2", 0.5), pair("q3", "a3", "b3", 0.7)],
    )
    dataset, facts = load_kto_dataset(data)
    assert _completions(dataset) == [("a1", True), ("b3", False), ("a3", True), ("b1", False)]
    assert facts["labels"] == {"desirable": 2, "undesirable": 2}
    assert facts["unpaired_from_pairs"]["pairs_dropped"] == {"tie": 1}


def test_kto_min_confidence_drops_unsure_pairs_and_says_so_when_none_is_left(tmp_path):
    data = _jsonl(tmp_path / "prefs.jsonl", [pair("q1", "a", "b", 0.6), pair("q2", "c", "d", 0.5)])
    dataset, _ = load_kto_dataset(data, min_confidence=0.05)
    assert len(dataset) == 2
    with pytest.raises(InputError, match=r"prefs\.jsonl: none of the 2 pairs gives a label"):
        load_kto_dataset(data, min_confidence=0.2)


def test_kto_reads_unpaired_csv_rows_as_written(tmp_path):
    path = tmp_path / "thumbs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "completion", "label", "rater_id"])
        writer.writerows([["Hi?", "Hello.", "true", "r1"], ["Hi?", "Go.", "false", "r1"]])
    dataset, facts = load_kto_dataset(path)
    assert [(r["prompt"], r["completion"], r["label"]) for r in dataset] == [
        ("Hi?", "Hello.", True),
        ("Hi?", "Go.", False),
    ]
    assert facts == {"labels": {"desirable": 1, "undesirable": 1}}


def test_kto_refuses_a_table_that_is_neither(tmp_path):
    data = _jsonl(tmp_path / "odd.jsonl", [{"prompt": "q", "answer": "a"}])
    with pytest.raises(InputError, match=r"odd\.jsonl: neither unpaired rows nor preference pairs"):
        load_kto_dataset(data)


def test_orpo_drops_ties_turns_soft_labels_and_keeps_only_the_pair_columns(tmp_path):
    data = _jsonl(
        tmp_path / "prefs.jsonl",
        [pair("q1", "a1", "b1", 0.9), pair("q2", "a2", "b2", 0.5), pair("q3", "worse", "x", 0.2)],
    )
    dataset, facts = load_orpo_dataset(data)
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dataset] == [
        ("a1", "b1"),
        ("x", "worse"),
    ]
    assert facts == {"pairs": 2, "ties_dropped": 1}


def test_orpo_needs_pairs_that_prefer_something(tmp_path):
    ties = _jsonl(tmp_path / "ties.jsonl", [pair("q", "a", "b", 0.5)])
    with pytest.raises(InputError, match=r"ties\.jsonl: all 1 pairs are ties"):
        load_orpo_dataset(ties)
    thumbs = _jsonl(tmp_path / "thumbs.jsonl", [{"prompt": "q", "completion": "a", "label": True}])
    with pytest.raises(InputError, match=r"missing column\(s\) chosen, rejected needed for ORPO"):
        load_orpo_dataset(thumbs)


def test_cli_kto_refuses_a_batch_of_one_before_loading_anything(tmp_path):
    data = _jsonl(tmp_path / "prefs.jsonl", [pair("q", "a", "b", 0.9)])
    model = tmp_path / "model"  # a directory with no model in it: loading it would fail
    model.mkdir()
    args = ["train", "kto", "--model", str(model), "--data", str(data), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--batch-size", "1"])
    assert result.exit_code == 2, result.output
    assert "per_device_train_batch_size: KTO estimates its KL term" in result.output
    assert "Traceback" not in result.output
