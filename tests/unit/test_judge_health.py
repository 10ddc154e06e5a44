"""Judge health numbers and model families against values worked out by hand, and their place
in a scripted labeling run's summary and dataset card."""

from __future__ import annotations

import json

import pytest
import yaml

from cai.human.agreement import pair_of_row
from cai.judge.compare import PairJudgment, RankingJudgment
from cai.judge.families import model_family, self_preference
from cai.judge.health import JudgedPair, judge_health, judged_health, order_outcome
from cai.judge.judged import JudgedSample
from cai.judge.parse import JudgeFailure

PAIRS = [
    # a shorter than b (5 vs 16 chars, 1 vs 3 words), a wins; orders agree
    JudgedPair("short", "much longer text", 0.8, (0.7, 0.9)),
    # b shorter (1 vs 9 chars), b wins; the orders flip
    JudgedPair("aaaa bbbb", "c", 0.3, (0.6, 0.0)),
    # an exact tie: near tie, order tie, no winner for length bias
    JudgedPair("x" * 10, "yyy", 0.5, (0.5, 0.5)),
    # a longer wins; one order is exactly 0.5: an order tie, not a flip; a near tie
    JudgedPair("long answer here", "no", 0.52, (0.54, 0.5)),
    # equal length: no length-bias count; orders known only as a flag
    JudgedPair("same", "size", 0.9, None, orders_agree=True),
    # failed: no probability, three recorded failures
    JudgedPair(
        "f", "g", None, failure_kinds=("empty_response", "empty_response", "context_overflow")
    ),
    # b longer in chars (6 vs 3) wins; equal in words; orders unknown
    JudgedPair("abc", "abcdef", 0.1),
]


def test_health_numbers_by_hand():
    h = judge_health(PAIRS)
    assert (h.pairs_judged, h.pairs_labeled) == (7, 6)
    assert h.failures_by_kind == {"context_overflow": 1, "empty_response": 2}
    # max(p, 1-p): 0.8 0.7 0.5 0.52 0.9 0.9 -> 4.32 / 6
    assert h.mean_confidence == pytest.approx(0.72)
    assert (h.near_ties, h.exact_ties) == (2, 1) and h.near_tie_rate == pytest.approx(2 / 6)
    # both orders known on pairs 1-5: one flip (pair 2), two order ties (pairs 3 and 4)
    assert (h.pairs_with_both_orders, h.position_flips, h.order_ties) == (5, 1, 2)
    assert h.position_flip_rate == pytest.approx(0.2)
    # length pairs 1, 2, 4, 7; the longer wins in 4 and 7
    assert (h.length_pairs, h.chosen_longer) == (4, 2) and h.length_bias_rate == 0.5
    assert h.length_unit == "chars"


def test_health_in_words_and_threshold():
    h = judge_health(PAIRS, near_tie=0.25, length_unit="words")
    # words: pairs 1 (1 vs 3, shorter wins), 2 (2 vs 1, shorter wins), 4 (3 vs 1, longer wins)
    assert (h.length_pairs, h.chosen_longer) == (3, 1)
    assert h.length_bias_rate == pytest.approx(1 / 3)
    # |p - 0.5| < 0.25: 0.3, 0.5 and 0.52 (0.8, 0.9 and 0.1 are 0.3 or 0.4 away)
    assert h.near_ties == 3


def test_health_of_nothing_is_all_none():
    h = judge_health([])
    assert h.pairs_judged == 0 and h.mean_confidence is None and h.length_bias_rate is None
    assert h.position_flip_rate is None and h.failures_by_kind == {}
    assert "0 of 0 pairs labeled" in h.lines()[0]


def test_order_outcome_counts_an_exact_half_as_a_tie():
    assert order_outcome([0.9, 0.6], None) == "agree"
    assert order_outcome([0.9, 0.4], True) == "flip"  # the probabilities win over the flag
    assert order_outcome([0.5, 0.9], False) == "tie"
    assert order_outcome(None, False) == "flip" and order_outcome([0.7], None) is None


def judgment(key, p, ab, ba, failures=()):
    return PairJudgment(
        key=key,
        ok=p is not None,
        prob_a=p,
        per_order={"AB": ab, "BA": ba} if ab is not None else {},
        orders_agree=None if ab is None else (ab - 0.5) * (ba - 0.5) > 0,
        failures=[JudgeFailure(kind=k) for k in failures],
    )


def judged(prompt_id, responses, policy="smollm2-135m-instruct#aa", **kw):
    kind = "pair" if "pair" in kw else "ranking" if "ranking" in kw else "skipped"
    return JudgedSample(
        prompt_id=prompt_id,
        prompt=[{"role": "user", "content": prompt_id}],
        responses=responses,
        policy_model=policy,
        kind=kind,
        **kw,
    )


def test_judged_records_pairs_rankings_and_self_preference():
    ranking = RankingJudgment(
        key="r",
        ok=True,
        scores=[0.0, 0.0, 0.0],
        pairs=[
            (0, 1, judgment("r01", 0.7, 0.8, 0.6)),  # "one" beats "three", shorter wins
            (0, 2, judgment("r02", 0.4, 0.6, 0.2)),  # flip; "xx" wins, shorter
            (1, 2, judgment("r12", None, None, None, failures=("backend_error",))),
        ],
    )
    records = [
        judged("p1", ["a", "bbb"], pair=judgment("k", 0.25, 0.25, 0.25)),  # longer wins
        judged("p2", ["one", "three", "xx"], policy="SmolLM2-360M", ranking=ranking),
        judged("p3", ["same"], skip_reason="too_few_responses"),
    ]
    h = judged_health(records, judge_model="HuggingFaceTB/SmolLM2-1.7B-Instruct@main")
    assert (h.pairs_judged, h.pairs_labeled) == (4, 3)
    assert h.failures_by_kind == {"backend_error": 1}
    assert (h.pairs_with_both_orders, h.position_flips) == (3, 1)
    assert (h.length_pairs, h.chosen_longer) == (3, 1)
    sp = h.self_preference
    assert sp is not None and sp.same_family and sp.shared_families == ["smollm"]
    assert any("self-preference risk" in line for line in h.lines())
    other = judged_health(records[:1], judge_model="Qwen/Qwen2.5-0.5B-Instruct")
    assert other.self_preference is not None and not other.self_preference.same_family
    assert not any("self-preference" in line for line in other.lines())


def test_pair_of_row_reads_a_preference_row():
    row = {
        "chosen": [{"role": "assistant", "content": "longer one"}],
        "rejected": [{"role": "assistant", "content": "short"}],
        "prob_chosen": 0.75,
        "prob_chosen_by_order": [0.9, 0.5],
        "orders_agree": False,
    }
    pair = pair_of_row(row)
    assert (pair.response_a, pair.response_b, pair.prob_a) == ("longer one", "short", 0.75)
    h = judge_health([pair])
    assert h.order_ties == 1 and h.position_flips == 0 and h.chosen_longer == 1


@pytest.mark.parametrize(
    ("identity", "family"),
    [
        ("smollm2-135m-instruct#0123456789abcdef", "smollm"),
        ("HuggingFaceTB/SmolLM2-360M@main", "smollm"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "qwen"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama"),
        ("meta-llama/Llama-3.2-1B", "llama"),
        ("mistralai/Mixtral-8x7B-v0.1", "mixtral"),
        ("tiny-qwen2#ab", "tiny-qwen"),
        ("gpt2", "gpt"),
    ],
)
def test_model_family(identity, family):
    assert model_family(identity) == family


def test_self_preference_needs_both_sides():
    assert self_preference([None], ["x"]) is None and self_preference(["x"], []) is None
    sp = self_preference(["tiny-llama#1"], ["tiny-qwen2#2"])
    assert sp is not None and not sp.same_family and sp.shared_families == []


def test_scripted_run_reports_health_in_summary_and_card(tmp_path):
    from cai.pipeline import load_pipeline_config, run_pipeline

    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(4))
    )
    config = {
        "name": "health",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "constitution": "default",
        "policy": {"kind": "scripted", "model": "unit"},
        "sample": {"n": 2, "max_tokens": 8},
        "preferences": {"format": "jsonl"},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    result = run_pipeline(load_pipeline_config(tmp_path / "p.yaml", []))
    health = result.summary["stages"]["judge"]["judge_health"]
    # the scripted judge scores both labels alike: every pair is an exact tie
    assert health["pairs_judged"] == 4 and health["pairs_labeled"] == 4
    assert health["exact_ties"] == 4 and health["order_ties"] == 4
    assert health["position_flips"] == 0 and health["length_pairs"] == 0
    assert health["self_preference"]["same_family"] is True  # judge = policy = "unit"
    prefs = result.summary["stages"]["preferences"]
    assert prefs["pairs_with_both_orders"] == 4 and prefs["pairs_orders_disagree"] == 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["stages"]["judge"]["judge_health"] == health
    card = (tmp_path / "out" / "preferences.jsonl.README.md").read_text()
    assert "## Judge health" in card and "- judge health: 4 of 4 pairs labeled" in card
