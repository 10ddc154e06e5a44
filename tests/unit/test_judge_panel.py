"""Judge panels on scripted members whose verdicts are known: combination, abstention, quorum.

Each scripted member gives the GOOD response a log-odds of `g` in both answer orders, so its
debiased probability is exactly sigmoid(g) and the hand-worked panel values follow from g.
"""

from __future__ import annotations

import math

import pytest

from cai.backends.base import ChoiceRequest, ContextOverflowError
from cai.backends.scripted import ScriptedBackend
from cai.constitution import Constitution, Principle
from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
from cai.judge.judged import judge_chunk
from cai.judge.panel import PanelConfig, PanelJudge, combine_probs, member_agreement, member_names
from cai.records import Sample
from cai.stages.preferences import PreferenceConfig, Provenance, rows_for
from cai.templates import TemplateSet

GOOD, BAD = "GOOD reply about tea", "BAD reply about tea"
CONVERSATION = [{"role": "user", "content": "How do I brew tea?"}]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def constitution() -> Constitution:
    principle = Principle(
        id="helpful",
        critique_request="Critique.",
        revision_request="Revise.",
        comparison_question="Which is more helpful?",
    )
    made = Constitution(name="test", principles=[principle])
    made.content_hash = made.compute_hash()
    return made


def text_of(request: ChoiceRequest) -> str:
    return "\n".join(m["content"] for m in request.messages or [])


def member(g: float, fail_on: str | None = None) -> PairwiseJudge:
    """A judge giving GOOD log-odds g over BAD in either order; overflows on `fail_on`."""

    def score(request: ChoiceRequest) -> list[float]:
        text = text_of(request)
        if fail_on is not None and fail_on in text:
            raise ContextOverflowError("too long for this member")
        good_first = text.index(GOOD) < text.index(BAD)
        return [g, 0.0] if good_first else [0.0, g]

    backend = ScriptedBackend(score=score, model_id=f"scripted-g{g}")
    return PairwiseJudge(backend, constitution(), TemplateSet(), JudgeConfig())


def panel(gs, config=None, fail=None) -> PanelJudge:
    fail = fail or {}
    named = [(f"m{i}", member(g, fail.get(i))) for i, g in enumerate(gs)]
    return PanelJudge.from_judges(named, config)


def pair(key="p1", prompt="How do I brew tea?") -> PairToJudge:
    conversation = [{"role": "user", "content": prompt}]
    return PairToJudge(key=key, conversation=conversation, response_a=GOOD, response_b=BAD)


def test_equal_weights_average_the_members_log_odds():
    [result] = panel([2.0, -1.0]).judge_pairs([pair()])
    assert result.ok
    assert [v.prob_a for v in result.members] == pytest.approx([sigmoid(2.0), sigmoid(-1.0)])
    # log-odds 2 and -1, equal weights: sigmoid(0.5) = 0.62246
    assert result.prob_a == pytest.approx(sigmoid(0.5)) == pytest.approx(0.622459, abs=1e-6)
    assert result.per_order == pytest.approx({"AB": sigmoid(0.5), "BA": sigmoid(0.5)})
    assert result.orders_agree is True
    assert result.n_judgments == 4  # 2 members x 2 orders x 1 principle
    assert [p.prob_a for p in result.per_principle] == pytest.approx([sigmoid(0.5)])


def test_mean_prob_and_weights():
    [mean_prob] = panel([2.0, -1.0], PanelConfig(combine="mean_prob")).judge_pairs([pair()])
    # (0.880797 + 0.268941) / 2
    assert mean_prob.prob_a == pytest.approx(0.574869, abs=1e-6)
    [weighted] = panel([2.0, -1.0], PanelConfig(weights=[3, 1])).judge_pairs([pair()])
    # (3 * 2 + 1 * -1) / 4 = 1.25 -> sigmoid(1.25) = 0.777300
    assert weighted.prob_a == pytest.approx(0.777300, abs=1e-6)
    assert [v.weight for v in weighted.members] == [3.0, 1.0]


def test_probabilities_are_clipped_before_log_odds():
    assert combine_probs([1.0, 0.25], [1, 1], "mean_logodds") == pytest.approx(
        sigmoid((math.log((1 - 1e-6) / 1e-6) + math.log(1 / 3)) / 2)
    )


@pytest.mark.parametrize("gs", [[1.5, -1.5], [-1.5, 1.5]])
def test_opposite_equal_weight_members_tie_whatever_their_order(gs):
    [result] = panel(gs).judge_pairs([pair()])
    assert result.ok and result.prob_a == 0.5
    sample = Sample(
        prompt_id="p",
        prompt=CONVERSATION,
        responses=[GOOD, BAD],
        finish_reasons=[],
        policy_model="x",
    )
    [judged] = judge_chunk(panel(gs), [sample])
    rows, filtered = rows_for(judged, PreferenceConfig(), Provenance())
    assert rows == [] and [f.reason for f in filtered] == ["tie"]


def test_a_failing_member_abstains_and_the_rest_label_the_pair():
    judge = panel([2.0, -1.0, 3.0], PanelConfig(min_members=2), fail={2: "LONG"})
    ok, failed_one = judge.judge_pairs([pair("p1"), pair("p2", prompt="LONG question")])
    assert ok.prob_a == pytest.approx(sigmoid((2.0 - 1.0 + 3.0) / 3))
    assert failed_one.ok and failed_one.prob_a == pytest.approx(sigmoid(0.5))
    abstained = failed_one.members[2]
    assert abstained.member == "m2" and abstained.prob_a is None
    assert {f.kind for f in abstained.failures} == {"context_overflow"}
    assert all(f.detail.startswith("[m2]") for f in failed_one.failures)
    assert len(failed_one.failures) == 2  # both orders of the one principle


def test_without_quorum_the_pair_is_a_recorded_failure_never_a_label():
    # default quorum of three members is a majority: two
    judge = panel([2.0, -1.0, 3.0], fail={1: "LONG", 2: "LONG"})
    [result] = judge.judge_pairs([pair(prompt="LONG question")])
    assert not result.ok and result.prob_a is None
    assert [v.prob_a for v in result.members] == [pytest.approx(sigmoid(2.0)), None, None]
    assert {f.detail.split("]")[0] for f in result.failures} == {"[m1", "[m2"}
    strict = panel([2.0, -1.0, 3.0], PanelConfig(min_members=3), fail={2: "LONG"})
    [result] = strict.judge_pairs([pair(prompt="LONG question")])
    assert not result.ok and result.prob_a is None


def test_quorum_defaults_to_a_majority():
    config = PanelConfig()
    assert [config.quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert PanelConfig(weights=[1, 2]).problems(3) == ["panel.weights has 2 entries for 3 judges"]
    assert "min_members is 4" in PanelConfig(min_members=4).problems(3)[0]
    assert "positive" in PanelConfig(weights=[1, 0]).problems(2)[0]


def test_member_agreement_with_the_panel():
    judge = panel([2.0, -1.0, 3.0], PanelConfig(min_members=2), fail={2: "LONG"})
    judged = judge.judge_pairs([pair("p1"), pair("p2", prompt="LONG question")])
    table = {row.member: row for row in member_agreement(judged)}
    # panel prefers GOOD on both pairs: m0 agrees twice, m1 never, m2 once and abstains once
    assert (table["m0"].pairs, table["m0"].agreement) == (2, 1.0)
    assert (table["m1"].pairs, table["m1"].agreement) == (2, 0.0)
    assert (table["m2"].pairs, table["m2"].agreement, table["m2"].abstained) == (1, 1.0, 1)


def test_member_names_are_short_and_unique():
    assert member_names(["/models/judge-a", "org/judge-b", "judge-a"]) == [
        "judge-a#1",
        "judge-b",
        "judge-a#2",
    ]


def test_member_columns_and_accuracy_against_people():
    from cai.judge.panel import member_accuracy, member_columns

    [judged] = panel([2.0, -1.0, 3.0], PanelConfig(min_members=2), fail={2: "LONG"}).judge_pairs(
        [pair(prompt="LONG question")]
    )
    # the panel picks a (GOOD); seen from chosen = a, m1's 0.268941 stays, m2 abstained
    columns = member_columns(judged, chosen_is_a=True)
    assert columns["judge_members"] == ["m0", "m1", "m2"]
    assert columns["prob_chosen_by_member"] == pytest.approx([0.880797, 0.268941, None], abs=1e-6)
    flipped = member_columns(judged, chosen_is_a=False)["prob_chosen_by_member"]
    assert flipped == pytest.approx([0.119203, 0.731059, None], abs=1e-6)
    rows = [
        (columns, 1.0),  # people prefer chosen: m0 right, m1 wrong
        (columns, 0.0),  # people prefer rejected: m0 wrong, m1 right
        (columns, 0.5),  # a human tie counts for nobody
        ({"judge_members": ["m0", "m1"], "prob_chosen_by_member": [0.9, 0.8]}, 1.0),
    ]
    table = {row.member: row for row in member_accuracy(rows)}
    assert (table["m0"].n, table["m0"].accuracy) == (3, pytest.approx(2 / 3))
    assert (table["m1"].n, table["m1"].accuracy) == (3, pytest.approx(2 / 3))
    assert "m2" not in table  # it never voted
