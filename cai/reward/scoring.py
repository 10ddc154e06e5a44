"""The judge's three rewards on one backend, for a whole micro-batch of requests at once.

`JudgeScorer.run` takes the items of every request the batcher gathered and makes one call
for all their pointwise assessments and one `judge_pairs` call for all their pairs (compare
pairs and the pairs of every k-wise group together), then hands each request its own answers.
The numbers are cai's own, computed the way the rest of cai computes them:

- score: P("follows") per principle on the "assess" template (as `AssessReward`), the
  principles sampled per item key, combined as the constitution's `aggregation` says;
- compare: `PairwiseJudge` in both orders, `prob_a` with a = chosen (what `cai judge` writes);
- rank: every pair of the group judged, Bradley-Terry fitted (`combine_ranking`), the
  log-strengths centred on the group.

A context overflow is one item's error; any other backend error is an outage and fails the
batch (the requests in it get a 503 and their clients retry), never a made-up number.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cai.backends.base import Backend, ChoiceRequest, ContextOverflowError
from cai.constitution import Constitution, sample_principles
from cai.constitution.usage import usable_principles
from cai.judge.assess import assessment_requests
from cai.judge.compare import (
    JudgeConfig,
    PairJudgment,
    PairToJudge,
    PairwiseJudge,
    RankingJudgment,
    ResponsesToRank,
    combine_ranking,
    combine_tiers,
    effective_tiers,
    ranking_pairs,
)
from cai.judge.health import JudgedPair, JudgeHealth, judge_health, pairs_of_judged
from cai.judge.written import call_isolating_overflow
from cai.records import pair_key, prompt_conversation, stable_id
from cai.reward.protocol import (
    CompareItem,
    CompareResult,
    ItemError,
    PrincipleScore,
    RankGroup,
    RankResult,
    Result,
    ScoreItem,
    ScoreResult,
    empty_result,
)
from cai.templates import TemplateSet

Parsed = Any  # a ScoreItem, CompareItem or RankGroup, or the ItemError it was refused with
HEALTH_WINDOW = 10_000
"""Judged pairs kept for the health numbers (the most recent ones)."""


@dataclass
class _Judged:
    """What `pairs_of_judged` reads of one judged pair or group."""

    responses: list[str]
    policy_model: str
    pair: PairJudgment | None = None
    ranking: RankingJudgment | None = None


@dataclass
class _GroupPlan:
    keep: list[int]
    item: ResponsesToRank
    start: int


class JudgeScorer:
    """Scores batches of reward requests with one judge backend and one constitution."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: TemplateSet,
        config: JudgeConfig | None = None,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.config = config or JudgeConfig()
        self.assess_principles = usable_principles(constitution, "assess")
        self.assess_tiers = effective_tiers(self.assess_principles)
        judge_principles = usable_principles(constitution, "judge")
        self.judge = (
            PairwiseJudge(backend, constitution, templates, self.config)
            if judge_principles
            else None
        )
        self._recent: deque[JudgedPair] = deque(maxlen=HEALTH_WINDOW)
        self._lock = threading.Lock()

    @property
    def k(self) -> int:
        """Principles per item: the judge setting, else the constitution's default."""
        return self.config.principles_per_pair or self.constitution.defaults.principles_per_judgment

    # ---- one micro-batch --------------------------------------------------------------------
    def run(self, jobs: Sequence[tuple[str, list[Parsed]]]) -> list[list[Result]]:
        """The answers of each job (mode, items), in order, from at most two backend calls."""
        located = [
            (j, i, item)
            for j, (_, items) in enumerate(jobs)
            for i, item in enumerate(items)
            if not isinstance(item, ItemError)
        ]
        pointwise = [x for x in located if jobs[x[0]][0] == "score"]
        pairwise = [x for x in located if jobs[x[0]][0] != "score"]
        out: list[list[Result | None]] = [
            [empty_result(mode, it) if isinstance(it, ItemError) else None for it in items]
            for mode, items in jobs
        ]
        answers = [
            *zip(pointwise, self._score([item for *_, item in pointwise]), strict=True),
            *zip(pairwise, self._pairs([item for *_, item in pairwise]), strict=True),
        ]
        for (j, i, _), result in answers:
            out[j][i] = result
        return [[r for r in answers if r is not None] for answers in out]

    # ---- score: pointwise assessment ----------------------------------------------------
    def _score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        if not items:
            return []
        if not self.assess_principles:
            return [ScoreResult(error=_no_principles("assess")) for _ in items]
        spans: list[tuple[list[str], int]] = []
        requests: list[ChoiceRequest] = []
        for item in items:
            chat = prompt_conversation(item.prompt)
            key = item.key or stable_id(chat)
            principles = sample_principles(
                self.constitution, key, self.k, self.config.seed, use="assess"
            )
            spans.append(([p.id for p in principles], len(requests)))
            requests += assessment_requests(
                self.templates, self.constitution, chat, item.response, principles
            )
        answers = call_isolating_overflow(self.backend.score_choices, requests)
        return [self._assessed(ids, answers[start : start + len(ids)]) for ids, start in spans]

    def _assessed(self, ids: list[str], answers: list[Any]) -> ScoreResult:
        for answer in answers:
            if isinstance(answer, ContextOverflowError):
                return ScoreResult(error=ItemError(kind="context_overflow", message=_line(answer)))
            if answer.failed:
                return ScoreResult(
                    error=ItemError(kind="engine_error", message="the judge gave no usable score")
                )
        scores = [
            PrincipleScore(principle=pid, p_follows=a.probs[0])
            for pid, a in zip(ids, answers, strict=True)
        ]
        return ScoreResult(reward=self._combined(scores), principles=scores)

    def _combined(self, scores: list[PrincipleScore]) -> float:
        if self.constitution.defaults.aggregation == "tiered":
            tiers = [(self.assess_tiers.get(s.principle, 1), s.p_follows) for s in scores]
            return combine_tiers(tiers, self.constitution.defaults.tier_margin)[0]
        return sum(s.p_follows for s in scores) / len(scores)

    # ---- compare and rank: one judge_pairs call ---------------------------------------------
    def _pairs(self, items: list[CompareItem | RankGroup]) -> list[Result]:
        if not items:
            return []
        if self.judge is None:
            return [empty_result(_mode(it), _no_principles("judge"), _size(it)) for it in items]
        flat: list[PairToJudge] = []
        plans: list[tuple[PairToJudge, int] | _GroupPlan | ItemError] = []
        for item in items:
            chat = prompt_conversation(item.prompt)
            if isinstance(item, CompareItem):
                pair = PairToJudge(
                    key=item.key or pair_key(chat, item.chosen, item.rejected),
                    conversation=chat,
                    response_a=item.chosen,
                    response_b=item.rejected,
                )
                plans.append((pair, len(flat)))
                flat.append(pair)
                continue
            keep = [i for i, text in enumerate(item.responses) if text.strip()]
            if len(keep) < 2:
                plans.append(_too_few(len(item.responses), len(keep)))
                continue
            texts = [item.responses[i] for i in keep]
            group = ResponsesToRank(
                key=stable_id(item.key or stable_id(chat), *texts),
                conversation=chat,
                responses=texts,
            )
            plans.append(_GroupPlan(keep, group, len(flat)))
            flat.extend(pair for _, _, pair in ranking_pairs(group))
        judged = self.judge.judge_pairs(flat)
        return [self._answer(item, plan, judged) for item, plan in zip(items, plans, strict=True)]

    def _answer(self, item, plan, judged: list[PairJudgment]) -> Result:
        if isinstance(plan, ItemError):
            return RankResult(rewards=[None] * len(item.responses), error=plan)
        if isinstance(plan, tuple):
            pair, index = plan
            judgment = judged[index]
            self._remember(_Judged([pair.response_a, pair.response_b], "", pair=judgment))
            return _compared(judgment)
        pairs = ranking_pairs(plan.item)
        results = [(i, j, judged[plan.start + n]) for n, (i, j, _) in enumerate(pairs)]
        ranking = combine_ranking(plan.item, results, self.config.ranking_prior)
        self._remember(_Judged(plan.item.responses, "", ranking=ranking))
        rewards: list[float | None] = [None] * len(item.responses)
        if not ranking.ok or ranking.scores is None:
            return RankResult(rewards=rewards, error=_failure(ranking.failures, "unranked"))
        mean = sum(ranking.scores) / len(ranking.scores)
        for index, score in zip(plan.keep, ranking.scores, strict=True):
            rewards[index] = score - mean
        error = None
        if len(plan.keep) < len(item.responses):
            error = ItemError(kind="empty_response", message="empty responses are not ranked")
        return RankResult(rewards=rewards, error=error)

    # ---- judge health -------------------------------------------------------------------------
    def _remember(self, judged: _Judged) -> None:
        with self._lock:
            self._recent.extend(pairs_of_judged([judged]))

    def health(self) -> JudgeHealth:
        """The judge's health numbers over the most recent judged pairs (compare and rank)."""
        with self._lock:
            recent = list(self._recent)
        return judge_health(recent)


def _compared(judgment: PairJudgment) -> CompareResult:
    error = None if judgment.ok else _failure(judgment.failures, "unlabeled")
    return CompareResult(
        prob_chosen=judgment.prob_a if judgment.ok else None,
        per_order=judgment.per_order,
        orders_agree=judgment.orders_agree,
        principles=judgment.principles,
        error=error,
    )


def _failure(failures: list, default: str) -> ItemError:
    if failures:
        first = failures[0]
        return ItemError(kind=first.kind, message=_line(first.detail or first.kind))
    return ItemError(kind=default, message="the judge gave no label for this item")


def _too_few(size: int, usable: int) -> ItemError:
    return ItemError(
        kind="too_few_responses",
        message=f"{usable} of {size} responses are non-empty; ranking needs at least 2",
    )


def _no_principles(use: str) -> ItemError:
    need = "an assessment_question" if use == "assess" else "a comparison_question"
    return ItemError(
        kind="no_principles",
        message=f"the service's constitution has no principle with {need}",
    )


def _mode(item: Any) -> str:
    return "compare" if isinstance(item, CompareItem) else "rank"


def _size(item: Any) -> int:
    return len(item.responses) if isinstance(item, RankGroup) else 0


def _line(value: Any) -> str:
    return " ".join(str(value).split())[:300] or type(value).__name__
