"""The judging stage: samples in, one judged record per prompt out, chunked and resumable.

Every pair of a chunk (two-response prompts and all pairs of k-response prompts alike) goes
to the judge in one batch, so the engine batches and its prefix cache is shared. What could
not be judged is kept as a record with its reason, so later stages count it instead of
silently losing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

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

if TYPE_CHECKING:
    from cai.backends.base import Backend
    from cai.executors import Executor
    from cai.executors.recipes import JudgeRecipe
    from cai.jobs import ChunkGate
    from cai.judge.panel import PanelJudge

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


def judge_fingerprint_settings(
    judge_model: str,
    constitution,
    templates,
    config,
    *,
    templates_fingerprint: str | None = None,
    panel: dict[str, Any] | None = None,
) -> dict:
    """The judging job's settings; the samples themselves are covered per chunk by content.

    `templates` is a TemplateSet, or None with its `templates_fingerprint` given instead.
    `panel` is a judge panel's settings (`cai.judge.panel.panel_settings`); a single judge
    has none, so its fingerprint is what it always was.
    """
    settings = {
        "stage": "judge",
        "judge_model": judge_model,
        "constitution": constitution.name,
        "constitution_hash": constitution.content_hash,
        "templates": templates.fingerprint() if templates is not None else templates_fingerprint,
        "config": config.model_dump(mode="json"),
    }
    if panel is not None:
        settings["panel"] = panel
    return settings


def judge_fingerprint(judge: PairwiseJudge | PanelJudge) -> dict:
    return judge_fingerprint_settings(
        judge_identity(judge),
        judge.constitution,
        judge.templates,
        judge.config,
        panel=_panel_settings(judge),
    )


def _members(judge: PairwiseJudge | PanelJudge) -> list[PairwiseJudge]:
    """The single judges a judge is made of: a panel's members, or the judge itself."""
    judges = getattr(judge, "judges", None)
    return list(judges) if judges is not None else [judge]  # type: ignore[list-item]


def _panel_settings(judge: PairwiseJudge | PanelJudge) -> dict[str, Any] | None:
    settings = getattr(judge, "settings", None)
    return settings() if callable(settings) else None


def judge_identity(judge: PairwiseJudge | PanelJudge) -> str:
    """The model identity of a judge, or of every member of a panel (resume fingerprint)."""
    model_id = getattr(judge, "model_id", None)
    return model_id if isinstance(model_id, str) else judge.backend.model_id  # type: ignore[union-attr]


def count_judge_tokens(judge: PairwiseJudge | PanelJudge) -> list[Backend]:
    """Wrap each of the judge's backends in a token counter (in place); returns them."""
    from cai.ledger import counting

    members = _members(judge)
    for member in members:
        member.backend = counting(member.backend, "judge")
    return [member.backend for member in members]


def judge_samples(
    judge: PairwiseJudge | PanelJudge | JudgeRecipe,
    samples: Iterable[Sample],
    work_dir: str | Path,
    *,
    total: int | None = None,
    chunk_size: int = 16,
    overwrite: bool = False,
    executor: Executor | None = None,
    gate: ChunkGate | None = None,
) -> JobStats:
    """Judge every sample into `work_dir`; a rerun skips chunks whose samples are unchanged.

    `judge` is a judge to use here, or a `JudgeRecipe` (constitution, templates, settings and
    the judge model's spec) that `executor` builds a judge from where the chunks run (each
    Ray actor, or this process); a `PanelJudge` runs here. The stats carry the executor's
    report, whose counters hold the judge requests made this run (`requests_scored`,
    `rationales_generated`). `gate` (a token budget) may stop the job at a chunk boundary.
    """
    from cai.executors import LocalExecutor
    from cai.executors.recipes import JudgeRecipe, JudgeWorker

    executor = executor or LocalExecutor()
    panel = None
    if isinstance(judge, JudgeRecipe):
        recipe, worker = judge, None
    else:
        recipe, worker = JudgeRecipe.from_judge(judge), JudgeWorker(judge)  # type: ignore[arg-type]
        panel = _panel_settings(judge)
    with executor.open(recipe, worker=worker) as session:
        fingerprint = judge_fingerprint_settings(
            session.model_id,
            recipe.constitution,
            None,
            recipe.config,
            templates_fingerprint=recipe.templates_fingerprint,
            panel=panel,
        )
        with ChunkedJob(work_dir, fingerprint, chunk_size=chunk_size, overwrite=overwrite) as job:
            return job.run(
                samples, total=total, desc="judging", unit="prompt", executor=session, gate=gate
            )


def iter_judged(work_dir: str | Path) -> Iterator[JudgedSample]:
    """The judged records of a finished judging job, in input order."""
    for row in iter_job_results(work_dir, "judge"):
        yield JudgedSample.model_validate(row)
