"""The revise stage (SL-CAI): prompts -> initial answers -> critique/revision rounds -> SFT data.

Work runs in resumable chunks (`cai.jobs.ChunkedJob`) that store the raw chains; every model
call goes through the backend (and its call cache), so a killed run resumes where it
stopped. The guards and the dataset are computed from the stored chains at the end, so
changing the guard policy or the output format re-runs no model call. The rounds themselves
are `cai.judge.critique.CritiqueReviser`'s.

The stage's directory (`revise.out`; in a pipeline `output_dir/revise` by default, for
`cai revise` the output directory itself):
    work/          resumable chunks of raw chains (job.json, chunks/*.jsonl)
    calls.sqlite   the call cache (unless the backend spec names another)
    sft/           the SFT dataset: split `train` (+ `flagged` under the split policy)
    preferences/   optional: final revision (chosen) vs initial answer (rejected)

Every critique and revision generation is counted in the token ledger under the stage name
`revise` (`cai.ledger`): each committed chunk carries its counts, so a resumed run reports the
whole job, and a token budget stops the stage at a chunk boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from cai.backends import Backend, BackendSpec, GenerationParams, VLLMSpec
from cai.budget import BudgetConfig
from cai.constitution import load_constitution
from cai.constitution.usage import require_use
from cai.executors.base import Chunk
from cai.executors.config import ExecutorConfig
from cai.guards import GuardConfig, GuardReport, RoundText, check_chain, route
from cai.jobs import JobStats, check_fingerprint, iter_job_results, job_fingerprint
from cai.judge.critique import (
    MAX_ROUNDS,
    ChainStart,
    CritiqueConfig,
    CritiqueReviser,
    RevisionChain,
)
from cai.ledger import TokenCount, counting
from cai.records import PromptRecord, SftExample
from cai.sft_data import (
    DatasetFormat,
    preference_schema_example,
    revision_preferences,
    write_splits,
)
from cai.stages.base import (
    CountedWorker,
    Output,
    Stage,
    StageContext,
    TemplatedRecipe,
    check_executor,
    run_chunks,
)
from cai.stages.sample import PROMPTS
from cai.stages.summary import JobSummary, Shown, shown_from
from cai.tables import iter_prompts
from cai.templates import TemplateSet

#: Settings `cai revise` takes that a pipeline sets once for all its stages, at its top level.
COMMAND_INPUTS = frozenset(
    {
        "prompts",
        "prompt_column",
        "limit",
        "constitution",
        "templates",
        "backend",
        "chunk_size",
        "executor",
        "budget",
        "overwrite",
    }
)


class ReviseConfig(BaseModel):
    """The revise settings: a pipeline's `revise:` section, or all of `cai revise`'s.

    `cai revise` reads the inputs too (the fields in `COMMAND_INPUTS`); a pipeline takes them
    from its top level (prompts, constitution, templates, policy, chunk_size, ...).
    """

    model_config = ConfigDict(extra="forbid")

    rounds: int | None = Field(None, ge=1, le=MAX_ROUNDS)
    """Critique -> revision rounds; None = the constitution's default."""
    seed: int = 0
    weighted_principles: bool | None = None
    """Sample principles by weight; None = the constitution's default."""
    max_examples: int = Field(2, ge=0)
    """Few-shot examples per prompt, from the round's principle."""
    response: GenerationParams = GenerationParams(temperature=0.7, max_tokens=256)
    critique: GenerationParams = GenerationParams(temperature=0.7, max_tokens=256)
    revision: GenerationParams = GenerationParams(temperature=0.7, max_tokens=256)
    guards: GuardConfig = Field(default_factory=GuardConfig)
    format: DatasetFormat = "save_to_disk"
    preferences: bool = False
    """Also write revised-vs-initial preference pairs (method="revision")."""
    preference_prob: float = Field(1.0, ge=0.5, le=1.0)
    """prob_chosen recorded for those pairs: an assumption, no judge compared them."""
    cache: bool = True
    """Cache model calls in <out>/calls.sqlite when the backend spec names no cache_path."""
    out: str | None = None
    """The stage's directory (see the module docstring); for `cai revise`, required."""

    prompts: str | None = None
    """JSONL / CSV / Parquet file or save_to_disk directory of prompts."""
    prompt_column: str | None = None
    limit: int | None = Field(None, ge=1)
    constitution: str = "default"
    templates: str | None = None
    """A directory of Jinja templates overriding the bundled `critique` / `revise`."""
    backend: BackendSpec = Field(default_factory=VLLMSpec)
    chunk_size: int = Field(64, ge=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    """Where chunks run: `local` (this process) or `ray` (a pool of actors); same output."""
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    """A token budget (stops at a chunk boundary; a rerun resumes) and prices for the cost."""
    overwrite: bool = False

    @classmethod
    def from_settings(cls, settings: ReviseConfig, **inputs: Any) -> ReviseConfig:
        """A pipeline's `revise:` section with `cai revise`'s inputs added (prompts, out, ...)."""
        return cls.model_validate({**settings.model_dump(mode="json"), **inputs})


class ReviseSummary(JobSummary):
    """What a run did: counts, guard decisions, where the data went."""

    prompts: int
    prompts_processed_now: int
    prompts_resumed: int
    rounds: int
    failed_chains: int
    guards: GuardReport
    preferences: int | None = None
    preferences_skipped: int | None = None
    policy_model: str
    constitution: str
    constitution_hash: str
    sft_path: str
    flagged_path: str | None = None
    preferences_path: str | None = None

    def lines(self, shown: Shown = shown_from(None)) -> list[str]:
        if self.stopped:
            done = self.prompts_processed_now + self.prompts_resumed
            return [f"revised: {done} of {self.prompts} prompts before the token budget stopped it"]
        out = [
            f"revised: {self.prompts} prompts ({self.prompts_processed_now} now, {self.prompts_resumed} resumed), "
            f"{self.rounds} round(s), {self.failed_chains} chain(s) stopped early",
            *self.guards.lines(),
            f"sft dataset: {shown(self.sft_path)}",
        ]
        if self.flagged_path:
            out.append(f"flagged split: {shown(self.flagged_path)} (split 'flagged')")
        if self.preferences_path:
            out.append(
                f"preferences: {self.preferences} pairs ({self.preferences_skipped} skipped) "
                f"-> {shown(self.preferences_path)}"
            )
        return out + self.executor_lines()


#: The summary's paths, written relative to the run directory.
SUMMARY_PATHS = ("sft_path", "flagged_path", "preferences_path")


# ---- the chains ------------------------------------------------------------------------------
def chain_row(
    chain: RevisionChain, guards: GuardConfig, provenance: dict[str, Any]
) -> dict[str, Any]:
    """One SFT row: SftExample's columns plus per-round flags, finish reasons and provenance."""
    texts = [RoundText.model_validate(r, from_attributes=True) for r in chain.rounds]
    flags, per_round = check_chain(texts, guards, failed=chain.failure is not None)
    example = SftExample(
        messages=[*chain.conversation, {"role": "assistant", "content": chain.final_response}],
        prompt_id=chain.key,
        initial_response=chain.initial_response,
        rounds=chain.revision_rounds(),
        principles=chain.principles,
        flags=flags,
    )
    row = example.model_dump()
    row.update(
        round_flags=[",".join(f) for f in per_round],
        initial_finish_reason=chain.initial_finish_reason,
        critique_finish_reasons=[r.critique_finish_reason for r in chain.rounds],
        revision_finish_reasons=[r.revision_finish_reason for r in chain.rounds],
        failure=chain.failure or "",
        **provenance,
    )
    return row


def revise_batch(
    reviser: CritiqueReviser, records: list[PromptRecord], response_params: GenerationParams
) -> list[RevisionChain]:
    """Initial answers for a batch of prompts (one call), then every round for all of them."""
    generations = reviser.generate_batch([r.prompt for r in records], response_params)
    starts, failed = [], {}
    for record, generation in zip(records, generations, strict=True):
        if generation is None:
            failed[record.prompt_id] = RevisionChain(
                key=record.prompt_id,
                conversation=record.prompt,
                initial_response="",
                initial_finish_reason="error",
                failure="initial response: the prompt exceeds the context",
            )
        else:
            starts.append(
                ChainStart(
                    key=record.prompt_id,
                    conversation=record.prompt,
                    response=generation.texts[0].strip(),
                    finish_reason=generation.finish_reasons[0],
                )
            )
    revised = {c.key: c for c in reviser.revise(starts)}
    return [failed.get(r.prompt_id) or revised[r.prompt_id] for r in records]


def iter_chains(out: str | Path) -> Iterable[RevisionChain]:
    """The raw chains stored by a finished run, in input order."""
    for row in iter_job_results(Path(out) / "work", "revise"):
        yield RevisionChain.model_validate(row)


def read_summary(out: str | Path) -> dict[str, Any]:
    """The revise stage's entry in the summary.json of a finished `cai revise` run."""
    summary = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
    return summary["stages"]["revise"]


# ---- the worker and its recipe ---------------------------------------------------------------
class ReviseWorker(CountedWorker):
    """Critique -> revision chains; every generation is counted under the `revise` stage."""

    def __init__(self, reviser: CritiqueReviser, response: GenerationParams) -> None:
        reviser.backend = counting(reviser.backend, "revise")
        self.reviser = reviser
        self.backends = [reviser.backend]
        self.response = response
        self.model_id = reviser.backend.model_id

    def work(self, chunk: Chunk) -> list[RevisionChain]:
        return revise_batch(self.reviser, chunk, self.response)

    def own_counters(self) -> dict[str, int]:
        stats = self.reviser.stats
        return {
            "critique_calls": int(stats.get("critique_calls", 0)),
            "revision_calls": int(stats.get("revision_calls", 0)),
        }


@dataclass
class ReviseRecipe(TemplatedRecipe):
    critique: CritiqueConfig
    response: GenerationParams

    stage: ClassVar[str] = "revise"

    def build(self, backend: Backend) -> ReviseWorker:
        reviser = CritiqueReviser(backend, self.constitution, self.templates(), self.critique)
        return ReviseWorker(reviser, self.response)


class _RevisePlan(BaseModel):
    """What a run resolved before any model loads: the principles, templates and parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    constitution: Any
    templates: Any
    critique: CritiqueConfig
    response: GenerationParams

    def recipe(self, backend: BackendSpec | None) -> ReviseRecipe:
        return ReviseRecipe(
            backend,
            self.constitution,
            **ReviseRecipe.template_fields(self.templates),
            critique=self.critique,
            response=self.response,
        )

    def fingerprint(self, model_id: str) -> dict[str, Any]:
        """The chains' settings; the prompts are covered per chunk by content."""
        return {
            "stage": "revise",
            "model": model_id,
            "constitution_hash": self.constitution.content_hash,
            "templates": self.templates.fingerprint(),
            "critique": self.critique.model_dump(mode="json"),
            "response": self.response.model_dump(mode="json"),
        }


def _plan(settings: ReviseConfig, constitution_name: str, templates_dir: str | None) -> _RevisePlan:
    constitution = load_constitution(constitution_name)
    require_use(constitution, "revise")
    weighted = (
        constitution.defaults.weighted_sampling
        if settings.weighted_principles is None
        else settings.weighted_principles
    )
    critique = CritiqueConfig(
        rounds=settings.rounds or constitution.defaults.critique_rounds,
        seed=settings.seed,
        weighted=weighted,
        max_examples=settings.max_examples,
        critique=settings.critique,
        revision=settings.revision,
    )
    seed = settings.response.seed if settings.response.seed is not None else settings.seed
    response = settings.response.model_copy(update={"n": 1, "seed": seed})
    return _RevisePlan(
        constitution=constitution,
        templates=TemplateSet(templates_dir),
        critique=critique,
        response=response,
    )


# ---- the datasets ----------------------------------------------------------------------------
def _card(settings: ReviseConfig, summary: ReviseSummary, templates_fingerprint: str) -> str:
    return "\n".join(
        [
            "# SL-CAI revisions",
            "",
            "Made with `cai revise`: each prompt's initial answer was critiqued against a principle",
            "sampled per round and rewritten; `messages` holds the prompt and the final revision.",
            "",
            f"- policy model: `{summary.policy_model}`",
            f"- constitution: `{summary.constitution}` (sha256 `{summary.constitution_hash}`)",
            f"- templates fingerprint: `{templates_fingerprint}`",
            f"- rounds: {summary.rounds}, seed: {settings.seed}, prompts: {summary.prompts}",
            f"- guard policy: `{settings.guards.policy}`, checks: {', '.join(settings.guards.checks)}",
            *[f"- {line.strip()}" for line in summary.guards.lines()],
            *_card_tokens(summary.tokens),
            "",
            "Columns: messages, prompt_id, initial_response, rounds (principle_id, critique,",
            "revision), principles, flags, round_flags, finish reasons, failure, provenance.",
            "",
        ]
    )


def _card_tokens(tokens: TokenCount | None) -> list[str]:
    if tokens is None or not (tokens.calls or tokens.cached_calls or tokens.uncounted_calls):
        return []
    line = (
        f"- tokens: {tokens.spent:,} spent (prompt {tokens.prompt:,}, completion "
        f"{tokens.completion:,}) in {tokens.calls:,} calls"
    )
    if tokens.cached_calls:
        line += f"; {tokens.cached_calls:,} calls served by the call cache"
    return [line]


def _write_datasets(
    settings: ReviseConfig, plan: _RevisePlan, out: Path, summary: ReviseSummary
) -> ReviseSummary:
    """Guards, the SFT dataset, the optional pairs and the card, from the stored chains."""
    provenance = {
        "policy_model": summary.policy_model,
        "constitution_name": plan.constitution.name,
        "constitution_hash": plan.constitution.content_hash,
    }
    rows = [chain_row(c, settings.guards, provenance) for c in iter_chains(out)]
    kept, flagged, report = route(rows, settings.guards.policy)
    summary = summary.model_copy(
        update={
            "prompts": len(rows),
            "failed_chains": sum(1 for r in rows if r["failure"]),
            "guards": report,
            "flagged_path": str(out / "sft") if flagged else None,
        }
    )
    if settings.preferences:
        pairs, skipped = revision_preferences(kept, prob_chosen=settings.preference_prob)
        write_splits(
            {"train": pairs},
            out / "preferences",
            settings.format,
            schema_example=preference_schema_example(),
        )
        summary.preferences, summary.preferences_skipped = len(pairs), skipped
        summary.preferences_path = str(out / "preferences")
    card = _card(settings, summary, plan.templates.fingerprint())
    write_splits({"train": kept, "flagged": flagged}, out / "sft", settings.format, card=card)
    return summary


# ---- the stage -------------------------------------------------------------------------------
def revise_dir(ctx: StageContext) -> Path:
    out = ctx.config.revise.out
    return Path(out) if out is not None else ctx.output_dir / "revise"


def _recipe_spec(ctx: StageContext, out: Path) -> BackendSpec:
    spec = ctx.config.policy
    if ctx.config.revise.cache and spec.cache_path is None:
        spec = spec.model_copy(update={"cache_path": str(out / "calls.sqlite")})
    return spec


def check(ctx: StageContext) -> None:
    check_executor(ctx)
    plan = _plan(ctx.config.revise, ctx.config.constitution, ctx.config.templates)
    ctx.loaded["revise_plan"] = plan
    if not ctx.config.overwrite:
        work = revise_dir(ctx) / "work"
        check_fingerprint(work, plan.fingerprint(""), ctx.config.chunk_size, ignore=["model"])


def run(ctx: StageContext) -> ReviseSummary:
    """Critique -> revision chains in resumable chunks under <out>/work, then the datasets.

    The chunks run wherever the run's executor runs them (this process or Ray actors); the
    token gate sees every chunk (reused or new) and may stop the job at a boundary: then no
    dataset is written and the summary says `stopped`; a rerun resumes.
    """
    started = time.monotonic()
    settings, plan, out = ctx.config.revise, ctx.loaded["revise_plan"], revise_dir(ctx)
    source = ctx.config.prompts
    total = ctx.counts["prompts"]
    gate = ctx.gate("revise")
    stats: JobStats = run_chunks(
        plan.recipe(_recipe_spec(ctx, out)),
        plan.fingerprint,
        iter_prompts(source.path, source.column, source.limit),
        out / "work",
        desc="revise",
        total=total,
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
        executor=ctx.executor(),
        gate=gate,
        backend=ctx.policy() if ctx.runs_here else None,
    )
    summary = ReviseSummary(
        prompts=total,
        prompts_processed_now=stats.items_processed,
        prompts_resumed=stats.items_done_before,
        rounds=plan.critique.rounds,
        failed_chains=0,
        guards=GuardReport(policy=settings.guards.policy),
        policy_model=(job_fingerprint(out / "work") or {}).get("model", ""),
        constitution=plan.constitution.name,
        constitution_hash=plan.constitution.content_hash,
        sft_path=str(out / "sft"),
        seconds=0.0,
        executor=stats.executor,
        stopped=stats.stopped,
        tokens=gate.ledger.total("revise"),
    )
    if not stats.stopped:
        summary = _write_datasets(settings, plan, out, summary)
    summary.seconds = round(time.monotonic() - started, 3)
    ctx.finish(gate, summary.stopped, summary.prompts)
    return summary.model_copy(
        update={k: ctx.rel(Path(getattr(summary, k)).absolute()) for k in SUMMARY_PATHS
                if getattr(summary, k) is not None}
    )


REVISE_OUT = Output(
    "revise",
    path=revise_dir,
    key="revise.out",
    fix="Drop revise.out (the stage then writes to output_dir/revise).",
)
STAGE = Stage("revise", (PROMPTS,), (REVISE_OUT,), check, run, ReviseSummary)
