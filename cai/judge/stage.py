"""The judging stage: samples in, one judged record per prompt out, chunked and resumable.

Every pair of a chunk (two-response prompts and all pairs of k-response prompts alike) goes
to the judge in one batch, so the engine batches and its prefix cache is shared. What could
not be judged is kept as a record with its reason, so later stages count it instead of
silently losing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cai.backends.base import Message
from cai.jobs import ChunkedJob, JobStats, iter_job_results
from cai.judge.compare import (
    PairJudgment,
    PairToJudge,
    PairwiseJudge,
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


def judge_chunk(judge: PairwiseJudge, samples: list[Sample]) -> list[JudgedSample]:
    """Judge one chunk of samples with a single batch of pairs."""
    flat: list[PairToJudge] = []
    plans: list[tuple[Sample, str, object]] = []
    for sample in samples:
        distinct = set(sample.responses)
        if len(sample.responses) < 2:
            plans.append((sample, "skip:too_few_responses", None))
        elif len(distinct) < 2:
            plans.append((sample, "skip:identical_responses", None))
        elif len(sample.responses) == 2:
            a, b = sample.responses
            pair = PairToJudge(
                key=pair_key(sample.prompt, a, b),
                conversation=sample.prompt,
                response_a=a,
                response_b=b,
            )
            plans.append((sample, "pair", (len(flat), pair)))
            flat.append(pair)
        else:
            item = ResponsesToRank(
                key=stable_id(sample.prompt_id, *sample.responses),
                conversation=sample.prompt,
                responses=sample.responses,
            )
            pairs = ranking_pairs(item)
            plans.append((sample, "ranking", (len(flat), item, pairs)))
            flat.extend(p for _, _, p in pairs)
    judged = judge.judge_pairs(flat)
    out = []
    for sample, kind, plan in plans:
        base = {
            "prompt_id": sample.prompt_id,
            "prompt": sample.prompt,
            "responses": sample.responses,
            "policy_model": sample.policy_model,
        }
        if kind.startswith("skip:"):
            out.append(JudgedSample(**base, kind="skipped", skip_reason=kind[5:]))
        elif kind == "pair":
            start, pair = plan  # type: ignore[misc]
            out.append(JudgedSample(**base, kind="pair", pair_id=pair.key, pair=judged[start]))
        else:
            start, item, pairs = plan  # type: ignore[misc]
            results = [(i, j, judged[start + n]) for n, (i, j, _) in enumerate(pairs)]
            ranking = combine_ranking(item, results, judge.config.ranking_prior)
            out.append(JudgedSample(**base, kind="ranking", pair_id=item.key, ranking=ranking))
    return out


def judge_fingerprint_settings(judge_model: str, constitution, templates, config) -> dict:
    """The judging job's settings; the samples themselves are covered per chunk by content."""
    return {
        "stage": "judge",
        "judge_model": judge_model,
        "constitution": constitution.name,
        "constitution_hash": constitution.content_hash,
        "templates": templates.fingerprint(),
        "config": config.model_dump(mode="json"),
    }


def judge_fingerprint(judge: PairwiseJudge) -> dict:
    return judge_fingerprint_settings(
        judge.backend.model_id, judge.constitution, judge.templates, judge.config
    )


def judge_samples(
    judge: PairwiseJudge,
    samples: Iterable[Sample],
    work_dir: str | Path,
    *,
    total: int | None = None,
    chunk_size: int = 16,
    overwrite: bool = False,
) -> JobStats:
    """Judge every sample into `work_dir`; a rerun skips chunks whose samples are unchanged."""

    def process(chunk: list[Sample]) -> list[dict]:
        return [j.model_dump(mode="json") for j in judge_chunk(judge, chunk)]

    fingerprint = judge_fingerprint(judge)
    with ChunkedJob(work_dir, fingerprint, chunk_size=chunk_size, overwrite=overwrite) as job:
        return job.run(samples, process, total=total, desc="judging", unit="prompt")


def iter_judged(work_dir: str | Path) -> Iterator[JudgedSample]:
    """The judged records of a finished judging job, in input order."""
    for row in iter_job_results(work_dir, "judge"):
        yield JudgedSample.model_validate(row)
