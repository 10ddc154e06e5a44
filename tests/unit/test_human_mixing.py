"""Mixing AI and human preferences: dedupe, human override, ratio and weights, counts."""

from __future__ import annotations

from collections import Counter

import pytest

from cai.human import pair_key
from cai.human.mixing import MixConfig, mix
from cai.records import PreferenceRow
from cai.tables import read_rows, write_table


def pref(prompt, chosen, rejected, p, source="ai", **extra):
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt,
        "pair_id": "stale",
        "prob_chosen": p,
        "source": source,
        **extra,
    }


def _content(row, column):
    return row[column][0]["content"]


def test_human_overrides_ai_and_duplicates_are_removed():
    ai = [
        pref("q1", "a", "b", 0.7, n_judgments=2),
        pref("q1", "b", "a", 0.6, n_judgments=4),  # same pair, more judgments: kept
        pref("q2", "x", "y", 0.9, n_judgments=2),  # overridden, agrees with people
        pref("q3", "m", "n", 0.8, n_judgments=2),  # overridden, people disagree
        pref("q4", "s", "t", 0.8, n_judgments=2, prob_chosen_by_order=[0.8, 0.8]),
    ]
    human = [
        pref("q2", "y", "x", 0.0, "human", rater_id="r1"),  # prob 0 for y: x wins
        pref("q3", "n", "m", 1.0, "human", rater_id="r1"),
        pref("q3", "n", "m", 1.0, "human", rater_id="r2"),
        pref("q3", "m", "n", 1.0, "human", rater_id="r3"),
    ]
    rows, report = mix(ai, human, MixConfig(shuffle=False))
    assert report.input == {"ai": 5, "human": 4}
    assert report.duplicates_removed == {"ai": 1, "human": 0}
    assert report.human_ratings_merged == 2
    assert report.ai_overridden == 2 and report.ai_conflicts == 1
    assert report.output == {"ai": 2, "human": 2} and report.n_output == 4
    by_prompt = {r["prompt"][0]["content"]: r for r in rows}
    assert by_prompt["q1"]["source"] == "ai" and by_prompt["q1"]["n_judgments"] == 4
    assert by_prompt["q2"]["source"] == "human"
    merged = by_prompt["q3"]
    assert merged["source"] == "human" and _content(merged, "chosen") == "n"
    assert merged["prob_chosen"] == pytest.approx(2 / 3)
    assert merged["n_judgments"] == 3 and merged["rater_id"] == "r1,r2,r3"
    assert by_prompt["q4"]["prob_chosen_by_order"] == [0.8, 0.8]  # extra columns survive
    for row in rows:
        PreferenceRow.model_validate(row)
        assert row["pair_id"] == pair_key(
            row["prompt"], _content(row, "chosen"), _content(row, "rejected")
        )


def _many(n, source, tag):
    return [
        pref(f"{tag}{i}", f"c{i}", f"r{i}", 1.0 if source == "human" else 0.8, source)
        for i in range(n)
    ]


def test_human_fraction_downsamples_the_larger_side():
    ai, human = _many(8, "ai", "a"), _many(2, "human", "h")
    rows, report = mix(ai, human, MixConfig(human_fraction=0.5, seed=1))
    assert report.output == {"ai": 2, "human": 2}
    assert Counter(r["source"] for r in rows) == {"ai": 2, "human": 2}
    _, report = mix(ai, human, MixConfig(human_fraction=0.2))
    assert report.output == {"ai": 8, "human": 2}
    _, report = mix(_many(3, "ai", "a"), _many(6, "human", "h"), MixConfig(human_fraction=0.5))
    assert report.output == {"ai": 3, "human": 3}
    _, report = mix(ai, human, MixConfig(human_fraction=1.0))
    assert report.output == {"ai": 0, "human": 2}
    same_a, _ = mix(ai, human, MixConfig(human_fraction=0.5, seed=1))
    assert rows == same_a  # seeded
    _, report = mix(ai, [], MixConfig(human_fraction=0.3))
    assert report.output == {"ai": 8, "human": 0} and "cannot be met" in report.notes[0]


def test_weights_repeat_or_subsample_each_source():
    ai, human = _many(8, "ai", "a"), _many(2, "human", "h")
    rows, report = mix(ai, human, MixConfig(weights={"human": 2.0, "ai": 0.5}, shuffle=False))
    assert report.output == {"ai": 4, "human": 4}
    assert Counter(r["prompt"][0]["content"] for r in rows if r["source"] == "human") == {
        "h0": 2,
        "h1": 2,
    }
    _, report = mix(ai, human, MixConfig(weights={"ai": 0.0}))
    assert report.output == {"ai": 0, "human": 2}


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="not both"):
        MixConfig(human_fraction=0.5, weights={"ai": 1.0})
    with pytest.raises(ValueError, match="unknown source"):
        MixConfig(weights={"robots": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        MixConfig(weights={"ai": -1.0})
    with pytest.raises(ValueError, match="unknown source"):
        mix([pref("q", "a", "b", 0.9, source="crowd")], [])


@pytest.mark.parametrize("name", ["mixed.jsonl", "mixed.parquet", "mixed_dir"])
def test_mixed_rows_write_and_read_back(tmp_path, name):
    ai = [pref("q1", "a", "b", 0.7, principles=["harm"], prob_chosen_by_order=[0.6, 0.8])]
    human = [pref("q2", "x", "y", 1.0, "human", rater_id="r1")]
    rows, _ = mix(ai, human, MixConfig(shuffle=False))
    back = read_rows(write_table(rows, tmp_path / name))
    assert len(back) == 2
    by_source = {r["source"]: r for r in back}
    assert by_source["ai"]["prob_chosen_by_order"] == [0.6, 0.8]
    assert by_source["human"]["prob_chosen_by_order"] is None and by_source["human"]["rater_id"] == "r1"
    assert by_source["human"]["chosen"] == [{"role": "assistant", "content": "x"}]
