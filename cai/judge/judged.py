"""Judged samples: one record per prompt, from one batch of pairs per chunk.

Every pair of a chunk (two-response prompts and all pairs of k-response prompts alike) goes
to the judge in one batch, so the engine batches and its prefix cache is shared. What could
not be judged is kept as a record with its reason, so later stages count it instead of
silently losing it. The judge stage (`cai.stages.judge`) runs `judge_chunk` on every chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from cai.backends.base import Message
from cai.jobs import iter_job_results
from cai.judge.compare import (
    PairJudgment,
    PairToJudge,
    RankingJudgment,
    ResponsesToRank,
    combine_ranking,
    ranking_pairs,
)
from cai.records import Sample, pair_key, stable_id

SkipReason = Literal["too_few_responses", "identical_responses"]


class JudgedSample(BaseModel):
    prompt_id: str
    prompt: list[Message]
    responses: list[str]
    policy_model: str
    kind: Literal["pair", "ranking", "skipped"]
    skip_reason: SkipReason | None = None
    pair_id: str | None = None
    pair: PairJudgment | None = None
    ranking: RankingJudgment | None = None


class PairJudge(Protocol):
    """The seam for judge methods: anything that labels a batch of pairs.

    `PairwiseJudge` is one; a panel of judges or another method plugs in here, and the stage,
    the k-wise expansion and the row builder stay as they are.
    """

    config: Any

    def judge_pairs(self, pairs: list[PairToJudge]) -> list[PairJudgment]: ...


@dataclass
class _Plan:
    """How one sample is judged: skipped, one pair, or all pairs of a k-wise ranking."""

    sample: Sample
    skip: SkipReason | None = None
    start: int = 0
    """Index of this sample's first pair in the chunk's flat batch."""
    pair: PairToJudge | None = None
    ranking: ResponsesToRank | None = None
    ranking_pairs: list[tuple[int, int, PairToJudge]] = field(default_factory=list)


def _plan(sample: Sample, start: int) -> _Plan:
    responses = sample.responses
    if len(responses) < 2:
        return _Plan(sample, skip="too_few_responses")
    if len(set(responses)) < 2:
        return _Plan(sample, skip="identical_responses")
    if len(responses) == 2:
        a, b = responses
        pair = PairToJudge(
            key=pair_key(sample.prompt, a, b),
            conversation=sample.prompt,
            response_a=a,
            response_b=b,
        )
        return _Plan(sample, start=start, pair=pair)
    item = ResponsesToRank(
        key=stable_id(sample.prompt_id, *responses), conversation=sample.prompt, responses=responses
    )
    return _Plan(sample, start=start, ranking=item, ranking_pairs=ranking_pairs(item))


def _pairs_of(plan: _Plan) -> list[PairToJudge]:
    if plan.pair is not None:
        return [plan.pair]
    return [p for _, _, p in plan.ranking_pairs]


def judge_chunk(judge: PairJudge, samples: list[Sample]) -> list[JudgedSample]:
    """Judge one chunk of samples with a single batch of pairs."""
    plans: list[_Plan] = []
    flat: list[PairToJudge] = []
    for sample in samples:
        plan = _plan(sample, len(flat))
        plans.append(plan)
        flat.extend(_pairs_of(plan))
    judged = judge.judge_pairs(flat)
    out = []
    for plan in plans:
        base = {
            "prompt_id": plan.sample.prompt_id,
            "prompt": plan.sample.prompt,
            "responses": plan.sample.responses,
            "policy_model": plan.sample.policy_model,
        }
        if plan.skip is not None:
            out.append(JudgedSample(**base, kind="skipped", skip_reason=plan.skip))
        elif plan.pair is not None:
            out.append(
                JudgedSample(**base, kind="pair", pair_id=plan.pair.key, pair=judged[plan.start])
            )
        else:
            assert plan.ranking is not None
            results = [
                (i, j, judged[plan.start + n]) for n, (i, j, _) in enumerate(plan.ranking_pairs)
            ]
            ranking = combine_ranking(plan.ranking, results, judge.config.ranking_prior)
            out.append(
                JudgedSample(**base, kind="ranking", pair_id=plan.ranking.key, ranking=ranking)
            )
    return out


def iter_judged(work_dir: str | Path) -> Iterator[JudgedSample]:
    """The judged records of a finished judging job, in input order."""
    for row in iter_job_results(work_dir, "judge"):
        yield JudgedSample.model_validate(row)
