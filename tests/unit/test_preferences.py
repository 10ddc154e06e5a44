"""Judgments -> preference rows: orientation, thresholds, counts, k-wise rows, writing."""

from __future__ import annotations

import json

import pytest

from cai.judge.compare import PairJudgment, PrincipleJudgment, RankingJudgment
from cai.judge.judged import JudgedSample
from cai.judge.parse import JudgeFailure
from cai.preference_data import load_preferences, write_dataset
from cai.stages.preferences import (
    PreferenceConfig,
    Provenance,
    build_preferences,
    dataset_card,
    rows_for,
)

PROMPT = [{"role": "user", "content": "Question?"}]
PROV = Provenance(judge_model="judge-x", constitution_name="c", constitution_hash="abc")


def judged_pair(prob_a, agree=True, ok=True, pid="p", failures=()):
    return JudgedSample(
        prompt_id=pid,
        prompt=PROMPT,
        responses=["first", "second"],
        policy_model="policy",
        kind="pair",
        pair_id=f"pair-{pid}",
        pair=PairJudgment(
            key=f"pair-{pid}",
            ok=ok,
            prob_a=prob_a,
            per_order={"AB": 0.9, "BA": 0.6 if agree else 0.3} if ok else {},
            principles=["harmless"],
            orders_agree=agree if ok else None,
            n_judgments=2 if ok else 0,
            failures=list(failures),
        ),
    )


def test_chosen_is_the_more_probable_response():
    [row], filtered = rows_for(judged_pair(0.2), PreferenceConfig(), PROV)
    assert not filtered
    assert row.chosen == [{"role": "assistant", "content": "second"}]
    assert row.rejected == [{"role": "assistant", "content": "first"}]
    assert row.prob_chosen == pytest.approx(0.8)
    assert row.prompt == PROMPT
    assert (row.judge_model, row.constitution_hash, row.source) == ("judge-x", "abc", "ai")


def test_thresholds_filter_and_count_every_reason(tmp_path):
    items = [
        judged_pair(0.9, pid="sure"),
        judged_pair(0.5, pid="tie"),
        judged_pair(0.53, pid="unsure"),
        judged_pair(0.8, agree=False, pid="disagree"),
        judged_pair(
            None,
            ok=False,
            pid="failed",
            failures=[JudgeFailure(kind="empty_rationale", raw_output="")],
        ),
        JudgedSample(
            prompt_id="one",
            prompt=PROMPT,
            responses=["x"],
            policy_model="policy",
            kind="skipped",
            skip_reason="too_few_responses",
        ),
    ]
    config = PreferenceConfig(min_confidence=0.05, require_orders_agree=True)
    counts = build_preferences(
        items, config, PROV, tmp_path / "rows.jsonl", tmp_path / "filtered.jsonl"
    )
    assert counts.prompts == 6
    assert counts.rows_written == 1
    assert counts.filtered == {
        "judge_failure": 1,
        "low_confidence": 1,
        "orders_disagree": 1,
        "tie": 1,
        "too_few_responses": 1,
    }
    assert counts.judge_failures_by_kind == {"empty_rationale": 1}
    assert counts.pairs_with_both_orders == 4 and counts.pairs_orders_disagree == 1
    assert counts.position_disagreement_rate == pytest.approx(0.25)
    assert counts.mean_prob_chosen == pytest.approx(0.9)
    filtered = [json.loads(line) for line in (tmp_path / "filtered.jsonl").read_text().splitlines()]
    assert sorted(f["prompt_id"] for f in filtered) == [
        "disagree",
        "failed",
        "one",
        "tie",
        "unsure",
    ]
    failed = next(f for f in filtered if f["prompt_id"] == "failed")
    assert failed["failures"][0]["kind"] == "empty_rationale"


def test_without_thresholds_only_exact_ties_are_dropped():
    rows, filtered = rows_for(judged_pair(0.5000001), PreferenceConfig(), PROV)
    assert len(rows) == 1 and not filtered


def ranking_sample(scores):
    pairs = [
        (
            i,
            j,
            PairJudgment(
                key=f"{i}{j}",
                ok=True,
                prob_a=0.7,
                principles=["p"],
                orders_agree=True,
                n_judgments=2,
            ),
        )
        for i in range(3)
        for j in range(i + 1, 3)
    ]
    return JudgedSample(
        prompt_id="r",
        prompt=PROMPT,
        responses=["r0", "r1", "r2"],
        policy_model="policy",
        kind="ranking",
        pair_id="rank",
        ranking=RankingJudgment(key="rank", ok=True, scores=scores, pairs=pairs),
    )


def test_kwise_best_vs_worst_and_all_pairs():
    sample = ranking_sample([0.1, 1.0, -1.1])
    [row], _ = rows_for(sample, PreferenceConfig(kwise="best_vs_worst"), PROV)
    assert row.chosen[0]["content"] == "r1" and row.rejected[0]["content"] == "r2"
    assert row.score_margin == pytest.approx(2.1)
    assert row.method == "best_vs_worst" and row.n_judgments == 6
    rows, _ = rows_for(sample, PreferenceConfig(kwise="all_pairs"), PROV)
    assert len(rows) == 3
    assert all(r.prob_chosen >= 0.5 and r.score_margin > 0 for r in rows)
    assert {(r.chosen[0]["content"], r.rejected[0]["content"]) for r in rows} == {
        ("r1", "r0"),
        ("r1", "r2"),
        ("r0", "r2"),
    }


@pytest.mark.parametrize("fmt", ["save_to_disk", "parquet", "jsonl"])
def test_written_dataset_round_trips_in_every_format(tmp_path, fmt):
    items = [judged_pair(0.9, pid="a"), judged_pair(0.1, pid="b"), judged_pair(0.5, pid="c")]
    counts = build_preferences(items, PreferenceConfig(), PROV, tmp_path / "rows.jsonl")
    card = dataset_card(title="t", counts=counts, provenance=PROV, details={"seed": 0})
    name = {"save_to_disk": "ds", "parquet": "ds.parquet", "jsonl": "ds.jsonl"}[fmt]
    written = write_dataset(tmp_path / "rows.jsonl", tmp_path / name, fmt, card=card)
    dataset = load_preferences(written)
    assert len(dataset) == 2
    assert dataset.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert "margin" not in dataset.column_names
    assert sorted(dataset["prob_chosen"]) == pytest.approx([0.9, 0.9])
    card_path = written / "README.md" if fmt == "save_to_disk" else tmp_path / f"{name}.README.md"
    text = card_path.read_text()
    assert "abc" in text and "rows written: 2" in text and '"tie": 1' in text
    assert "`policy`" in text


def test_empty_dataset_still_writes_with_the_schema(tmp_path):
    counts = build_preferences(
        [judged_pair(0.5)], PreferenceConfig(), PROV, tmp_path / "rows.jsonl"
    )
    assert counts.rows_written == 0 and counts.mean_prob_chosen is None
    written = write_dataset(tmp_path / "rows.jsonl", tmp_path / "ds", "save_to_disk")
    dataset = load_preferences(written)
    assert len(dataset) == 0 and "prob_chosen" in dataset.column_names


def test_pair_ids_match_the_human_label_key_whatever_the_order():
    """AI rows, human imports and mixing must name the same pair the same way."""
    from cai.human.pairs import row_key
    from cai.judge.judged import judge_chunk
    from cai.records import Sample, pair_key

    assert pair_key(PROMPT, "x", "y") == pair_key(PROMPT, "y", "x")
    rows, _ = rows_for(ranking_sample([0.1, 1.0, -1.1]), PreferenceConfig(kwise="all_pairs"), PROV)
    for row in rows:
        assert row.pair_id == row_key(row.model_dump())

    class FirstWins:
        config = type("C", (), {"ranking_prior": 0.0})()

        def judge_pairs(self, items):
            return [
                PairJudgment(
                    key=i.key,
                    ok=True,
                    prob_a=0.8,
                    principles=["p"],
                    orders_agree=True,
                    n_judgments=2,
                )
                for i in items
            ]

    sample = Sample(
        prompt_id="q",
        prompt=PROMPT,
        responses=["b text", "a text"],
        finish_reasons=["stop", "stop"],
        policy_model="policy",
    )
    [judged] = judge_chunk(FirstWins(), [sample])
    [row], _ = rows_for(judged, PreferenceConfig(), PROV)
    assert judged.pair_id == row.pair_id == row_key(row.model_dump())


def test_rows_keep_per_order_and_per_principle_numbers_as_chosen_wins():
    """The numbers routing and agreement reports read, oriented to the chosen response."""
    judged = judged_pair(0.2, agree=False)  # per_order AB 0.9, BA 0.3 -> b ("second") is chosen
    judged.pair.per_principle = [
        PrincipleJudgment(principle="harmless", prob_a=0.2),
    ]
    [row], _ = rows_for(judged, PreferenceConfig(), PROV)
    assert row.chosen[0]["content"] == "second"
    # chosen (b) shown first is order BA: P(b wins) = 1 - 0.3; shown second is AB: 1 - 0.9
    assert row.prob_chosen_by_order == pytest.approx([0.7, 0.1])
    assert row.prob_chosen_by_principle == pytest.approx([0.8])
    [row_a], _ = rows_for(judged_pair(0.8), PreferenceConfig(), PROV)
    assert row_a.prob_chosen_by_order == pytest.approx([0.9, 0.6])
