"""The judge's arithmetic on a scripted backend: order swap, principle ensemble, CoT, failures."""

from __future__ import annotations

import math

import pytest

from cai.backends.base import ChoiceRequest, ContextOverflowError
from cai.backends.scripted import ScriptedBackend
from cai.constitution import Constitution, Principle
from cai.judge.compare import (
    JudgeConfig,
    PairToJudge,
    PairwiseJudge,
    ResponsesToRank,
    combine_ranking,
    ranking_pairs,
)
from cai.templates import TemplateSet

GOOD, BAD = "GOOD reply about tea", "BAD reply about tea"
CONVERSATION = [{"role": "user", "content": "How do I brew tea?"}]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def make_constitution(questions: dict[str, str]) -> Constitution:
    principles = [
        Principle(
            id=pid,
            critique_request=f"Critique for {pid}.",
            revision_request=f"Revise for {pid}.",
            comparison_question=question,
        )
        for pid, question in questions.items()
    ]
    constitution = Constitution(name="test", principles=principles)
    constitution.content_hash = constitution.compute_hash()
    return constitution


def text_of(request: ChoiceRequest) -> str:
    return "\n".join(m["content"] for m in request.messages or [])


def first_is(request: ChoiceRequest, needle: str) -> bool:
    text = text_of(request)
    return text.index(needle) < text.index(GOOD if needle == BAD else BAD)


class CountingBackend(ScriptedBackend):
    """Counts batch calls too, to check the judge batches a whole chunk into one call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def score_choices(self, requests):
        self.batches.append(len(requests))
        return super().score_choices(requests)


def judge_with(score, questions=None, respond=None, **config) -> PairwiseJudge:
    kwargs = {"score": score}
    if respond is not None:
        kwargs["respond"] = respond
    backend = CountingBackend(**kwargs)
    constitution = make_constitution(questions or {"helpful": "Which is more helpful?"})
    return PairwiseJudge(backend, constitution, TemplateSet(), JudgeConfig(**config))


def pair(key="p1", a=GOOD, b=BAD) -> PairToJudge:
    return PairToJudge(key=key, conversation=CONVERSATION, response_a=a, response_b=b)


def test_order_swap_cancels_a_pure_position_bias():
    judge = judge_with(lambda r: [0.0, -2.0])  # always prefers whatever is shown first
    [result] = judge.judge_pairs([pair()])
    assert result.ok
    assert result.prob_a == pytest.approx(0.5, abs=1e-12)
    assert result.per_order["AB"] == pytest.approx(sigmoid(2.0))
    assert result.per_order["BA"] == pytest.approx(1 - sigmoid(2.0))
    assert result.orders_agree is False
    assert result.n_judgments == 2


def test_content_preference_survives_the_swap_and_bias_is_averaged_out():
    # Prefers GOOD by logit 2, plus a first-position bias of logit 1.
    def score(request):
        good_first = first_is(request, GOOD)
        return [0.0, -3.0] if good_first else [0.0, 1.0]

    judge = judge_with(score)
    [result] = judge.judge_pairs([pair(a=GOOD, b=BAD)])
    assert result.prob_a == pytest.approx((sigmoid(3.0) + sigmoid(1.0)) / 2)
    assert result.orders_agree is True
    [swapped] = judge.judge_pairs([pair(a=BAD, b=GOOD)])
    assert swapped.prob_a == pytest.approx(1 - result.prob_a)


def test_principles_are_averaged_and_kept_per_principle():
    def score(request):
        strength = 3.0 if "ALPHA" in text_of(request) else 1.0
        return [strength, 0.0] if first_is(request, GOOD) else [0.0, strength]

    questions = {"alpha": "ALPHA: which is better?", "beta": "BETA: which is better?"}
    judge = judge_with(score, questions, principles_per_pair=2)
    [result] = judge.judge_pairs([pair()])
    assert sorted(result.principles) == ["alpha", "beta"]
    by_id = {p.principle: p.prob_a for p in result.per_principle}
    assert by_id["alpha"] == pytest.approx(sigmoid(3.0))
    assert by_id["beta"] == pytest.approx(sigmoid(1.0))
    assert result.prob_a == pytest.approx((sigmoid(3.0) + sigmoid(1.0)) / 2)
    assert result.n_judgments == 4


def test_principle_choice_is_seeded_by_pair_key():
    questions = {f"p{i}": f"Question {i}?" for i in range(6)}
    judge = judge_with(lambda r: [0.0, 0.0], questions, principles_per_pair=2, seed=7)
    first = judge.judge_pairs([pair("k1"), pair("k2")])
    again = judge.judge_pairs([pair("k1"), pair("k2")])
    assert [r.principles for r in first] == [r.principles for r in again]
    assert all(len(set(r.principles)) == 2 for r in first)


def test_whole_batch_goes_out_in_one_scoring_call():
    judge = judge_with(lambda r: [0.0, -1.0], {"a": "A?", "b": "B?"}, principles_per_pair=2)
    judge.judge_pairs([pair(f"k{i}") for i in range(5)])
    assert judge.backend.batches == [5 * 2 * 2]


def test_chain_of_thought_scores_after_the_rationale_and_clamps():
    seen = []

    def score(request):
        seen.append(request.assistant_prefix)
        return [8.0, 0.0] if first_is(request, GOOD) else [0.0, 8.0]

    judge = judge_with(
        score,
        respond=lambda prompt, params, i: "Response one is clearer, so (A) wins.",
        chain_of_thought=True,
    )
    [result] = judge.judge_pairs([pair()])
    assert result.ok
    assert result.prob_a == pytest.approx(0.6)  # sigmoid(8) clamped to the default band
    assert all("Response one is clearer" in prefix for prefix in seen)
    assert all(o.rationale and o.stated_label == "A" for o in result.per_principle[0].orders)
    judge.config = JudgeConfig(chain_of_thought=True, cot_band=(0.3, 0.9))
    [wider] = judge.judge_pairs([pair()])
    assert wider.prob_a == pytest.approx(0.9)


def test_unusable_rationale_is_a_recorded_failure_not_a_label():
    judge = judge_with(lambda r: [5.0, 0.0], respond=lambda *a: "  ", chain_of_thought=True)
    [result] = judge.judge_pairs([pair()])
    assert not result.ok and result.prob_a is None
    assert {f.kind for f in result.failures} == {"empty_rationale"}
    assert all(f.raw_output == "  " for f in result.failures)
    assert judge.backend.calls["score"] == 0


def test_truncated_rationale_fails_unless_allowed():
    long = " ".join(["word"] * 50)
    judge = judge_with(
        lambda r: [1.0, 0.0], respond=lambda *a: long, chain_of_thought=True, cot_max_tokens=10
    )
    [result] = judge.judge_pairs([pair()])
    assert not result.ok
    assert result.failures[0].kind == "truncated_rationale"
    judge.config = JudgeConfig(
        chain_of_thought=True, cot_max_tokens=10, allow_truncated_rationale=True
    )
    [allowed] = judge.judge_pairs([pair()])
    assert allowed.ok


def test_empty_response_fails_without_calling_the_model():
    judge = judge_with(lambda r: [1.0, 0.0])
    [result] = judge.judge_pairs([pair(b="   ")])
    assert not result.ok
    assert [f.kind for f in result.failures] == ["empty_response"]
    assert judge.backend.calls["score"] == 0


def test_context_overflow_is_isolated_to_the_pair_that_caused_it():
    def score(request):
        if "HUGE" in text_of(request):
            raise ContextOverflowError("prompt of 9999 tokens exceeds max_model_len 2048")
        return [1.0, 0.0] if first_is(request, GOOD) else [0.0, 1.0]

    judge = judge_with(score)
    results = judge.judge_pairs([pair("ok"), pair("big", a=GOOD + " HUGE")])
    assert results[0].ok and results[0].prob_a == pytest.approx(sigmoid(1.0))
    assert not results[1].ok
    assert {f.kind for f in results[1].failures} == {"context_overflow"}
    assert "9999" in results[1].failures[0].detail


def test_partial_failures_label_only_when_allowed():
    def score(request):
        if "BETA" in text_of(request):
            raise ContextOverflowError("too long")
        return [2.0, 0.0] if first_is(request, GOOD) else [0.0, 2.0]

    questions = {"alpha": "ALPHA?", "beta": "BETA?"}
    strict = judge_with(score, questions, principles_per_pair=2)
    [result] = strict.judge_pairs([pair()])
    assert not result.ok and len(result.failures) == 2
    partial = judge_with(score, questions, principles_per_pair=2, allow_partial=True)
    [result] = partial.judge_pairs([pair()])
    assert result.ok and result.prob_a == pytest.approx(sigmoid(2.0))
    assert len(result.failures) == 2


def test_kwise_ranking_orders_responses_by_quality():
    quality = {"worst answer": 0.0, "middle answer": 1.0, "best answer": 2.0}

    def score(request):
        text = text_of(request)
        present = sorted((text.index(t), q) for t, q in quality.items() if t in text)
        (_, first), (_, second) = present
        return [first, second]

    judge = judge_with(score)
    item = ResponsesToRank(key="r", conversation=CONVERSATION, responses=list(quality))
    pairs = ranking_pairs(item)
    judged = judge.judge_pairs([pair for _, _, pair in pairs])
    ranking = combine_ranking(
        item,
        [(i, j, r) for (i, j, _), r in zip(pairs, judged, strict=True)],
        judge.config.ranking_prior,
    )
    assert ranking.ok and len(ranking.pairs) == 3
    scores = ranking.scores
    assert scores[2] > scores[1] > scores[0]
    # Every pair differs by one logit of quality, so Bradley-Terry recovers those gaps.
    assert scores[2] - scores[1] == pytest.approx(1.0, abs=0.05)


def test_config_rejects_a_band_that_excludes_one_half():
    with pytest.raises(ValueError, match="cot_band"):
        JudgeConfig(cot_band=(0.6, 0.8))


def test_single_order_keeps_the_position_bias_and_reports_no_agreement():
    judge = judge_with(lambda r: [0.0, -2.0], both_orders=False)
    [result] = judge.judge_pairs([pair()])
    assert result.prob_a == pytest.approx(sigmoid(2.0))
    assert result.per_order == {"AB": pytest.approx(sigmoid(2.0))}
    assert result.orders_agree is None and result.n_judgments == 1


def test_verdict_method_parses_the_written_answer_into_a_hard_label():
    """No log-probs are read: the label named in the text decides, in both orders."""

    def respond(prompt, params, index):
        text = "\n".join(m["content"] for m in prompt)
        first_good = text.index(GOOD) < text.index(BAD)
        return f"The tea answer is better, so the answer is ({'A' if first_good else 'B'})."

    judge = judge_with(lambda r: [0.0, 0.0], respond=respond, method="verdict")
    [result] = judge.judge_pairs([pair()])
    assert result.ok and result.prob_a == 1.0 and result.orders_agree
    assert judge.backend.calls["score"] == 0
    orders = result.per_principle[0].orders
    assert {o.order: o.stated_label for o in orders} == {"AB": "A", "BA": "B"}
    assert all(o.label_logprobs == [] and o.rationale for o in orders)


def test_verdict_method_position_bias_lands_on_a_tie():
    judge = judge_with(lambda r: [0.0, 0.0], respond=lambda *a: "I pick (A).", method="verdict")
    [result] = judge.judge_pairs([pair()])
    assert result.ok and result.prob_a == 0.5 and result.orders_agree is False


def test_verdict_that_names_no_label_is_counted_as_unparseable_never_guessed():
    judge = judge_with(
        lambda r: [0.0, 0.0], respond=lambda *a: "Both are fine answers.", method="verdict"
    )
    [result] = judge.judge_pairs([pair()])
    assert not result.ok and result.prob_a is None
    assert [f.kind for f in result.failures] == ["unparseable", "unparseable"]
    assert all(f.raw_output == "Both are fine answers." for f in result.failures)
    assert {f.order for f in result.failures} == {"AB", "BA"}


def test_verdict_method_changes_the_fingerprint_only_when_chosen():
    assert "method" not in JudgeConfig().model_dump()
    assert JudgeConfig(method="verdict").model_dump()["method"] == "verdict"
