"""The judge stage: samples in, one judged record per prompt out, chunked and resumable.

The judge is one judge model (`PairwiseJudge`), a recipe each Ray actor builds one from, or a
panel (`PanelJudge`: one backend per member, each with its own engine settings and call
cache, closed when the stage ends; a member whose spec is the policy's reuses the policy
engine, as a single judge does). What a chunk does is `cai.judge.judged.judge_chunk`.

Reads the samples (made by the sample stage, or `samples:`); writes `judgments/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cai.backends import Backend, BackendSpec, make_backend
from cai.config import ConfigError
from cai.constitution import load_constitution
from cai.constitution.usage import require_use
from cai.executors import Executor
from cai.executors.base import Chunk
from cai.jobs import (
    JOB_FILE,
    ChunkGate,
    JobStats,
    check_fingerprint,
    job_fingerprint,
    job_is_complete,
)
from cai.judge.compare import JudgeConfig, PairwiseJudge
from cai.judge.health import JudgeHealth, judged_health
from cai.judge.judged import JudgedSample, iter_judged, judge_chunk
from cai.judge.panel import (
    MemberAgreement,
    PanelJudge,
    member_agreement,
    member_names,
    panel_settings,
)
from cai.ledger import counting
from cai.records import Sample
from cai.samples_input import validate_samples
from cai.stages.base import (
    CountedWorker,
    Input,
    Output,
    Stage,
    StageContext,
    TemplatedRecipe,
    check_executor,
    run_chunks,
)
from cai.stages.sample import count_samples, iter_samples
from cai.stages.summary import JobSummary, Shown
from cai.templates import TemplateSet


class JudgeSummary(JobSummary):
    prompts: int
    prompts_judged_now: int
    prompts_resumed: int
    choice_requests_scored_now: int
    rationales_generated_now: int
    judge_health: JudgeHealth | None = None
    """The judge's own numbers over every judged pair (cai.judge.health)."""
    panel: list[MemberAgreement] | None = None
    """Under a judge panel: how often each member's winner is the panel's (cai.judge.panel)."""

    def lines(self, shown: Shown) -> list[str]:
        return [
            f"judged: {self.prompts} prompts ({self.prompts_resumed} resumed), "
            f"{self.choice_requests_scored_now} answer scorings this run",
            *self.executor_lines(),
            *(self.judge_health.lines() if self.judge_health else []),
            *([_panel_line(self.panel)] if self.panel else []),
        ]

    def requests_made(self) -> str:
        return f"{self.choice_requests_scored_now + self.rationales_generated_now} judge requests"


def _panel_line(members: list[MemberAgreement]) -> str:
    parts = []
    for m in members:
        share = "n/a" if m.agreement is None else f"{m.agreement:.1%}"
        abstained = f", abstained on {m.abstained}" if m.abstained else ""
        parts.append(f"{m.member} {share} of {m.pairs}{abstained}")
    return "panel members agreeing with the panel's label: " + "; ".join(parts)


# ---- identity --------------------------------------------------------------------------------
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
    has none, and its fingerprint carries no `panel` key.
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


# ---- the worker and its recipe ---------------------------------------------------------------
class JudgeWorker(CountedWorker):
    """One judge (a `PairwiseJudge`) or a panel of them (`cai.judge.panel.PanelJudge`); every
    member's backend is counted under the `judge` stage."""

    def __init__(self, judge: PairwiseJudge | PanelJudge) -> None:
        members = _members(judge)
        for member in members:
            member.backend = counting(member.backend, "judge")
        self.judge = judge
        self.backends = [member.backend for member in members]
        self.model_id = judge_identity(judge)

    def work(self, chunk: Chunk) -> list[JudgedSample]:
        return judge_chunk(self.judge, chunk)

    def own_counters(self) -> dict[str, int]:
        return {
            "requests_scored": self.judge.requests_scored,
            "rationales_generated": self.judge.rationales_generated,
        }


@dataclass
class JudgeRecipe(TemplatedRecipe):
    config: JudgeConfig

    stage: ClassVar[str] = "judge"

    @classmethod
    def from_parts(
        cls,
        backend: BackendSpec | None,
        constitution,
        templates: TemplateSet,
        config: JudgeConfig,
    ) -> JudgeRecipe:
        return cls(backend, constitution, **cls.template_fields(templates), config=config)

    @classmethod
    def from_judge(cls, judge: PairwiseJudge, backend: BackendSpec | None = None) -> JudgeRecipe:
        return cls.from_parts(backend, judge.constitution, judge.templates, judge.config)

    def build(self, backend: Backend) -> JudgeWorker:
        return JudgeWorker(PairwiseJudge(backend, self.constitution, self.templates(), self.config))


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
    panel = None
    if isinstance(judge, JudgeRecipe):
        recipe, worker = judge, None
    else:
        recipe, worker = JudgeRecipe.from_judge(judge), JudgeWorker(judge)  # type: ignore[arg-type]
        panel = _panel_settings(judge)
    return run_chunks(
        recipe,
        lambda model_id: judge_fingerprint_settings(
            model_id,
            recipe.constitution,
            None,
            recipe.config,
            templates_fingerprint=recipe.templates_fingerprint,
            panel=panel,
        ),
        samples,
        work_dir,
        desc="judging",
        total=total,
        chunk_size=chunk_size,
        overwrite=overwrite,
        executor=executor,
        gate=gate,
        worker=worker,
    )


# ---- the judge a run uses --------------------------------------------------------------------
def panel_fingerprint(ctx: StageContext) -> dict[str, Any] | None:
    """The panel's part of the judging fingerprint, from the config (None: one judge)."""
    specs = ctx.config.judge_backends
    if specs is None:
        return None
    return panel_settings(member_names([s.model for s in specs]), ctx.config.panel)


def _check_panel(ctx: StageContext) -> None:
    """A panel runs its members in this process: refuse Ray and passed-in judge backends."""
    if ctx.config.judge_backends is None:
        return
    if not ctx.runs_here:
        raise ConfigError(
            "a judge panel (judge_backends) runs in this process; the ray executor builds "
            "one judge backend per actor",
            key="executor.kind",
            fix="Use executor.kind: local for a panel, or one judge model (judge_backend) "
            "with Ray.",
        )
    if ctx.judge_backend is not None:
        raise ConfigError(
            "a judge backend was passed to run_pipeline, but the config lists a panel "
            "(judge_backends)",
            key="judge_backends",
            fix="Pass no judge_backend object (each member is built from its spec), or drop "
            "judge_backends.",
        )


@contextmanager
def _stage_judge(
    ctx: StageContext, constitution, templates
) -> Iterator[PairwiseJudge | PanelJudge | JudgeRecipe]:
    """The judge for this run's judge stage; backends built for a panel close on exit."""
    config = ctx.config
    if config.judge_backends is None:
        if ctx.runs_here:
            yield PairwiseJudge(ctx.judge(), constitution, templates, config.judge)
        else:  # built inside each actor from this recipe
            spec = config.judge_backend
            spec = config.policy if spec is None or spec == config.policy else spec
            yield JudgeRecipe.from_parts(spec, constitution, templates, config.judge)
        return
    specs = config.judge_backends
    with ExitStack() as stack:
        named = []
        for name, spec in zip(member_names([s.model for s in specs]), specs, strict=True):
            if spec == config.policy:
                backend = ctx.policy()
            else:
                backend = make_backend(spec)
                stack.callback(backend.close)
            named.append((name, PairwiseJudge(backend, constitution, templates, config.judge)))
        yield PanelJudge.from_judges(named, config.panel)


def _panel_agreement(ctx: StageContext):
    """Each panel member's agreement with the panel over every judged pair (None: no panel)."""
    if ctx.config.judge_backends is None:
        return None
    judgments = []
    for judged in iter_judged(ctx.judgments_dir):
        if judged.pair is not None:
            judgments.append(judged.pair)
        if judged.ranking is not None:
            judgments.extend(j for _, _, j in judged.ranking.pairs)
    return member_agreement(judgments)


def judge_health(ctx: StageContext) -> JudgeHealth:
    """The judge's health over every judged pair, read back once per run (cai.judge.health)."""
    if "judge_health" not in ctx.loaded:
        judge_model = (job_fingerprint(ctx.judgments_dir) or {}).get("judge_model")
        ctx.loaded["judge_health"] = judged_health(iter_judged(ctx.judgments_dir), judge_model)
    return ctx.loaded["judge_health"]


# ---- the stage -------------------------------------------------------------------------------
def _samples_ready(ctx: StageContext) -> int | None:
    """Samples from an earlier run or a file: finished, present, every row readable."""
    samples = ctx.samples_dir
    if (samples / JOB_FILE).is_file():
        if not job_is_complete(samples):
            raise ConfigError(
                "the samples there are unfinished (the sample stage was interrupted or is "
                "running)",
                key="samples",
                fix=f"Rerun the sample stage to finish {samples} first.",
            )
        return None
    if not samples.exists():
        raise ConfigError(
            f"{samples}: no samples there",
            key="samples",
            fix="Run the `sample` stage first (cai sample / cai run), or set `samples:` to a "
            "samples directory or a .jsonl/.csv/.parquet file of responses.",
        )
    return validate_samples(samples)


SAMPLES_IN = Input("samples", made_by="sample", check=_samples_ready)
JUDGMENTS_OUT = Output(
    "judgments", path=lambda ctx: ctx.judgments_dir, key="output_dir", fix="Use another --out."
)


def check(ctx: StageContext) -> None:
    _check_panel(ctx)
    check_executor(ctx)
    constitution = load_constitution(ctx.config.constitution)
    require_use(constitution, "judge")  # before any model loads
    templates = TemplateSet(ctx.config.templates)
    ctx.loaded["constitution"], ctx.loaded["templates"] = constitution, templates
    if not ctx.config.overwrite:
        fingerprint = judge_fingerprint_settings(
            "", constitution, templates, ctx.config.judge, panel=panel_fingerprint(ctx)
        )
        check_fingerprint(
            ctx.judgments_dir, fingerprint, ctx.config.chunk_size, ignore=["judge_model"]
        )


def run(ctx: StageContext) -> JudgeSummary:
    constitution, templates = ctx.loaded["constitution"], ctx.loaded["templates"]
    total = ctx.counts.get("samples")
    if total is None:
        total = count_samples(ctx.samples_dir)
    if total == 0:
        raise ConfigError(
            "there are no samples to judge",
            key="samples",
            fix=f"Check {ctx.rel(ctx.samples_dir)}: it holds no rows.",
        )
    gate = ctx.gate("judge")
    with _stage_judge(ctx, constitution, templates) as judge:
        stats = judge_samples(
            judge,
            iter_samples(ctx.samples_dir),
            ctx.judgments_dir,
            total=total,
            chunk_size=ctx.config.chunk_size,
            overwrite=ctx.config.overwrite,
            executor=ctx.executor(),
            gate=gate,
        )
    ctx.finish(gate, stats.stopped, total)
    ctx.provenance = {
        "judge_model": (job_fingerprint(ctx.judgments_dir) or {}).get("judge_model"),
        "constitution_name": constitution.name,
        "constitution_hash": constitution.content_hash,
        "templates": templates.fingerprint(),
    }
    counters = stats.executor.counters if stats.executor is not None else {}
    return JudgeSummary(
        prompts=stats.items_total,
        prompts_judged_now=stats.items_processed,
        prompts_resumed=stats.items_done_before,
        choice_requests_scored_now=counters.get("requests_scored", 0),
        rationales_generated_now=counters.get("rationales_generated", 0),
        seconds=round(stats.seconds, 3),
        executor=stats.executor,
        judge_health=None if stats.stopped else judge_health(ctx),
        stopped=stats.stopped,
        tokens=gate.ledger.total("judge"),
        panel=None if stats.stopped else _panel_agreement(ctx),
    )


STAGE = Stage("judge", (SAMPLES_IN,), (JUDGMENTS_OUT,), check, run, JudgeSummary)
