"""Tiered aggregation: a higher tier decides when it is confident, else the next one does.

The scripted judge gives each principle a fixed preference, so mean and tiered can be made
to disagree on purpose and the deciding tier checked exactly.
"""

from __future__ import annotations

import math

import pytest

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.constitution import Constitution, ConstitutionDefaults, Principle
from cai.judge.compare import (
    JudgeConfig,
    PairToJudge,
    PairwiseJudge,
    combine_tiers,
    effective_tiers,
)
from cai.judge.judged import JudgedSample
from cai.stages.preferences import PreferenceConfig, Provenance, rows_for
from cai.templates import TemplateSet

GOOD, BAD = "GOOD reply", "BAD reply"
CONVERSATION = [{"role": "user", "content": "Help me."}]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def scorer(prefer: dict[str, float]):
    """Each principle (found by its question) gives P(GOOD wins) = prefer[id], in both orders."""

    def score(request: ChoiceRequest) -> list[float]:
        text = "\n".join(m["content"] for m in request.messages or [])
        pid = next(pid for pid in prefer if f"[{pid}]" in text)
        p_good = prefer[pid]
        good_first = text.index(GOOD) < text.index(BAD)
        p_first = p_good if good_first else 1 - p_good
        return [0.0, -logit(p_first)]  # logprob(A) - logprob(B) = logit(P(A))

    return score


def constitution(tiers: dict[str, int | None], aggregation="mean", margin=0.1) -> Constitution:
    principles = [
        Principle(id=pid, comparison_question=f"[{pid}] Which response is better?", tier=tier)
        for pid, tier in tiers.items()
    ]
    c = Constitution(
        name="tiers",
        principles=principles,
        defaults=ConstitutionDefaults(
            principles_per_judgment=len(principles), aggregation=aggregation, tier_margin=margin
        ),
    )
    c.content_hash = c.compute_hash()
    return c


def judge(c: Constitution, prefer: dict[str, float], **config) -> PairwiseJudge:
    return PairwiseJudge(
        ScriptedBackend(score=scorer(prefer)), c, TemplateSet(), JudgeConfig(**config)
    )


PAIR = PairToJudge(key="k", conversation=CONVERSATION, response_a=GOOD, response_b=BAD)
# Safety (tier 1) is sure BAD is better; two helpfulness principles (tier 2) mildly prefer GOOD.
PREFER = {"safety": 0.2, "helpful": 0.7, "clear": 0.75}
TIERS = {"safety": 1, "helpful": 2, "clear": 2}


def test_mean_and_tiered_disagree_and_tiered_records_the_tier():
    [mean] = judge(constitution(TIERS), PREFER).judge_pairs([PAIR])
    assert mean.prob_a == pytest.approx((0.2 + 0.7 + 0.75) / 3)  # 0.55: GOOD wins on average
    assert mean.decided_by_tier is None and mean.aggregation == "mean"

    [tiered] = judge(constitution(TIERS, "tiered"), PREFER).judge_pairs([PAIR])
    assert tiered.aggregation == "tiered"
    assert tiered.prob_a == pytest.approx(0.2)  # tier 1 is confident (|0.2 - 0.5| >= 0.1)
    assert tiered.decided_by_tier == 1
    assert [(t.tier, round(t.prob_a, 6)) for t in tiered.per_tier] == [(1, 0.2), (2, 0.725)]
    assert set(tiered.per_tier[1].principles) == {"helpful", "clear"}
    assert {p.principle: p.tier for p in tiered.per_principle} == TIERS


def test_an_unsure_higher_tier_defers_to_the_next():
    prefer = {"safety": 0.55, "helpful": 0.7, "clear": 0.75}  # safety unsure: |0.05| < 0.1
    [tiered] = judge(constitution(TIERS, "tiered"), prefer).judge_pairs([PAIR])
    assert tiered.decided_by_tier == 2
    assert tiered.prob_a == pytest.approx(0.725)
    # A smaller margin lets the unsure tier decide after all (set in JudgeConfig).
    [strict] = judge(constitution(TIERS, "tiered"), prefer, tier_margin=0.05).judge_pairs([PAIR])
    assert strict.decided_by_tier == 1 and strict.prob_a == pytest.approx(0.55)


def test_judge_config_overrides_the_constitution_aggregation():
    c = constitution(TIERS)  # the file says mean
    [tiered] = judge(c, PREFER, aggregation="tiered").judge_pairs([PAIR])
    assert tiered.decided_by_tier == 1
    [mean] = judge(constitution(TIERS, "tiered"), PREFER, aggregation="mean").judge_pairs([PAIR])
    assert mean.decided_by_tier is None and mean.prob_a == pytest.approx(0.55)


def test_untiered_principles_form_the_last_tier_and_every_tier_is_sampled():
    c = constitution({"safety": 1, "helpful": None, "clear": None}, "tiered")
    assert effective_tiers(c.principles) == {"safety": 1, "helpful": 2, "clear": 2}
    j = judge(c, PREFER, principles_per_pair=1)  # one principle per tier
    picked = j.principles_for("pair-1")
    assert picked[0].id == "safety" and len(picked) == 2
    assert picked[1].id in ("helpful", "clear")


def test_no_tier_confident_means_the_lowest_tier_decides():
    assert combine_tiers([(1, 0.52), (2, 0.47), (3, 0.45)], 0.1)[:2] == (0.45, 3)
    assert combine_tiers([(2, 0.9), (1, 0.5)], 0.1)[:2] == (0.9, 2)
    with pytest.raises(ValueError):
        combine_tiers([], 0.1)


def test_the_row_records_the_deciding_tier():
    [tiered] = judge(constitution(TIERS, "tiered"), PREFER).judge_pairs([PAIR])
    sample = JudgedSample(
        prompt_id="p",
        prompt=CONVERSATION,
        responses=[GOOD, BAD],
        policy_model="m",
        kind="pair",
        pair_id="k",
        pair=tiered,
    )
    [row], _ = rows_for(sample, PreferenceConfig(), Provenance())
    assert row.chosen[0]["content"] == BAD  # tier 1 (safety) decided for BAD
    assert row.decided_by_tier == 1
    assert row.prob_chosen == pytest.approx(0.8)


def test_unset_aggregation_stays_out_of_the_resume_fingerprint():
    assert "aggregation" not in JudgeConfig().model_dump(mode="json")
    assert JudgeConfig(aggregation="tiered", tier_margin=0.2).model_dump(mode="json")[
        "tier_margin"
    ] == pytest.approx(0.2)
