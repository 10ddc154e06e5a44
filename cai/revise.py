"""The SL-CAI stage: prompts -> initial answers -> critique/revision rounds -> SFT dataset.

Work runs in resumable chunks (`cai.jobs.ChunkedJob`) that store the raw chains; every model
call goes through the backend (and its call cache), so a killed run resumes where it
stopped. The guards and the dataset are computed from the stored chains at the end, so
changing the guard policy or the output format re-runs no model call.

Output directory layout:
    work/          resumable chunks of raw chains (job.json, chunks/*.jsonl)
    calls.sqlite   the call cache (unless the backend spec names another)
    sft/           the SFT dataset: split `train` (+ `flagged` under the split policy)
    preferences/   optional: final revision (chosen) vs initial answer (rejected)
    summary.json   counts, guard report, tokens, paths; config.resolved.yaml the resolved config

Every critique and revision generation is counted in the token ledger under the stage name
`revise` (`cai.ledger`): each committed chunk carries its counts, so a resumed run reports the
whole job, and a token budget (`cai.budget.TokenBudget`) stops the stage at a chunk boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai.backends import AnySpec, Backend, BackendSpec, GenerationParams, VLLMSpec
from cai.budget import BudgetConfig, TokenBudget
from cai.executors.base import Executor, ExecutorReport, ExecutorSession
from cai.executors.config import ExecutorConfig
from cai.guards import GuardConfig, GuardReport, RoundText, check_chain, route
from cai.jobs import JobStats
from cai.judge.critique import (
    MAX_ROUNDS,
    ChainStart,
    CritiqueConfig,
    CritiqueReviser,
    RevisionChain,
)
from cai.ledger import TokenCount
from cai.records import PromptRecord, SftExample
from cai.sft_data import (
    DatasetFormat,
    preference_schema_example,
    revision_preferences,
    write_splits,
)
from cai.stage_summary import Shown, StageSummary, shown_from


class ReviseSettings(BaseModel):
    """The stage's own knobs: what a pipeline config's `revise:` section holds."""

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


class ReviseConfig(ReviseSettings):
    """Everything `cai revise` needs: the inputs and outputs, plus the stage's settings."""

    prompts: str
    """JSONL / CSV / Parquet file or save_to_disk directory of prompts."""
    out: str
    """Output directory (see the module docstring for its layout)."""
    prompt_column: str | None = None
    limit: int | None = Field(None, ge=1)
    constitution: str = "default"
    templates: str | None = None
    """A directory of Jinja templates overriding the bundled `critique` / `revise`."""
    backend: BackendSpec = Field(default_factory=VLLMSpec)
    cache: bool = True
    """Cache model calls in out/calls.sqlite when the backend spec names no cache_path."""
    chunk_size: int = Field(64, ge=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    """Where chunks run: `local` (this process) or `ray` (a pool of actors); same output."""
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    """A token budget (stops at a chunk boundary; a rerun resumes) and prices for the cost."""
    overwrite: bool = False

    @classmethod
    def from_settings(cls, settings: ReviseSettings, **inputs: Any) -> ReviseConfig:
        """A full config from a pipeline's `revise:` section plus the pipeline's shared inputs
        (prompts, out, prompt_column, limit, constitution, templates, backend, ...)."""
        return cls.model_validate({**settings.model_dump(mode="json"), **inputs})


class ReviseSummary(StageSummary):
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
    seconds: float
    executor: ExecutorReport | None = None
    stopped: bool = False
    """The token budget stopped the stage at a chunk boundary: no dataset was written."""
    tokens: TokenCount | None = None
    """The stage's tokens over its whole job (earlier, resumed runs included)."""

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
        if self.executor is not None:
            out += self.executor.lines()
        return out


def chain_row(
    chain: RevisionChain, guards: GuardConfig, provenance: dict[str, Any]
) -> dict[str, Any]:
    """One SFT row: SftExample's columns plus per-round flags, finish reasons and provenance."""
    texts = [
        RoundText(
            answer_before=r.answer_before,
            critique=r.critique,
            revision=r.revision,
            revision_finish_reason=r.revision_finish_reason,
        )
        for r in chain.rounds
    ]
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


def _card(config: ReviseConfig, summary: ReviseSummary, templates_fingerprint: str) -> str:
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
            f"- rounds: {summary.rounds}, seed: {config.seed}, prompts: {summary.prompts}",
            f"- guard policy: `{config.guards.policy}`, checks: {', '.join(config.guards.checks)}",
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


class _RevisePlan(BaseModel):
    """What a run resolved before any model loads: the principles, templates and parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    constitution: Any
    templates: Any
    critique: CritiqueConfig
    response: GenerationParams


def _plan(config: ReviseConfig) -> _RevisePlan:
    from cai.constitution import load_constitution
    from cai.templates import TemplateSet

    constitution = load_constitution(config.constitution)
    weighted = (
        constitution.defaults.weighted_sampling
        if config.weighted_principles is None
        else config.weighted_principles
    )
    critique = CritiqueConfig(
        rounds=config.rounds or constitution.defaults.critique_rounds,
        seed=config.seed,
        weighted=weighted,
        max_examples=config.max_examples,
        critique=config.critique,
        revision=config.revision,
    )
    seed = config.response.seed if config.response.seed is not None else config.seed
    response = config.response.model_copy(update={"n": 1, "seed": seed})
    return _RevisePlan(
        constitution=constitution,
        templates=TemplateSet(config.templates),
        critique=critique,
        response=response,
    )


def _fingerprint(plan: _RevisePlan, model_id: str) -> dict[str, Any]:
    """The chains' settings; the prompts are covered per chunk by content."""
    return {
        "stage": "revise",
        "model": model_id,
        "constitution_hash": plan.constitution.content_hash,
        "templates": plan.templates.fingerprint(),
        "critique": plan.critique.model_dump(mode="json"),
        "response": plan.response.model_dump(mode="json"),
    }


def _backend_spec(config: ReviseConfig, out: Path) -> AnySpec:
    spec = config.backend
    if config.cache and spec.cache_path is None:
        spec = spec.model_copy(update={"cache_path": str(out / "calls.sqlite")})
    return spec


def _run_chains(
    config: ReviseConfig,
    plan: _RevisePlan,
    session: ExecutorSession,
    out: Path,
    total: int,
    gate: TokenBudget,
) -> JobStats:
    """Critique -> revision chains for every prompt, in resumable chunks under out/work.

    The chunks run wherever `session` runs them (this process or Ray actors); each is
    `revise_batch` on a `CritiqueReviser` built from the same recipe, and carries its token
    counts. `gate` sees every chunk (reused or new) and may stop the job at a boundary.
    """
    from cai.io import iter_prompts
    from cai.jobs import ChunkedJob

    fingerprint = _fingerprint(plan, session.model_id)
    with ChunkedJob(out / "work", fingerprint, config.chunk_size, config.overwrite) as job:
        return job.run(
            iter_prompts(config.prompts, config.prompt_column, config.limit),
            total=total,
            desc="revise",
            unit="prompt",
            executor=session,
            gate=gate,
        )


def _stopped_summary(
    config: ReviseConfig,
    plan: _RevisePlan,
    model_id: str,
    out: Path,
    stats: JobStats,
    total: int,
    started: float,
    tokens: TokenCount,
) -> ReviseSummary:
    """A run the token budget stopped: counts so far, no dataset written (a rerun resumes)."""
    summary = ReviseSummary(
        prompts=total,
        prompts_processed_now=stats.items_processed,
        prompts_resumed=stats.items_done_before,
        rounds=plan.critique.rounds,
        failed_chains=0,
        guards=GuardReport(policy=config.guards.policy),
        policy_model=model_id,
        constitution=plan.constitution.name,
        constitution_hash=plan.constitution.content_hash,
        sft_path=str(out / "sft"),
        seconds=round(time.monotonic() - started, 3),
        executor=stats.executor,
        stopped=True,
        tokens=tokens,
    )
    _save_run_files(config, summary, out)
    return summary


def _write_datasets(
    config: ReviseConfig,
    plan: _RevisePlan,
    model_id: str,
    out: Path,
    stats: JobStats,
    started: float,
    tokens: TokenCount,
) -> ReviseSummary:
    """Guards, the SFT dataset, the optional pairs, the card, the resolved config, the summary."""
    provenance = {
        "policy_model": model_id,
        "constitution_name": plan.constitution.name,
        "constitution_hash": plan.constitution.content_hash,
    }
    rows = [chain_row(c, config.guards, provenance) for c in iter_chains(out)]
    kept, flagged, report = route(rows, config.guards.policy)
    summary = ReviseSummary(
        prompts=len(rows),
        prompts_processed_now=stats.items_processed,
        prompts_resumed=stats.items_done_before,
        rounds=plan.critique.rounds,
        failed_chains=sum(1 for r in rows if r["failure"]),
        guards=report,
        policy_model=model_id,
        constitution=plan.constitution.name,
        constitution_hash=plan.constitution.content_hash,
        sft_path=str(out / "sft"),
        flagged_path=str(out / "sft") if flagged else None,
        seconds=0.0,
        executor=stats.executor,
        tokens=tokens,
    )
    if config.preferences:
        pairs, skipped = revision_preferences(kept, prob_chosen=config.preference_prob)
        write_splits(
            {"train": pairs},
            out / "preferences",
            config.format,
            schema_example=preference_schema_example(),
        )
        summary.preferences, summary.preferences_skipped = len(pairs), skipped
        summary.preferences_path = str(out / "preferences")
    summary.seconds = round(time.monotonic() - started, 3)
    card = _card(config, summary, plan.templates.fingerprint())
    write_splits({"train": kept, "flagged": flagged}, out / "sft", config.format, card=card)
    _save_run_files(config, summary, out)
    return summary


def run_revise(
    config: ReviseConfig,
    backend: Backend | None = None,
    executor: Executor | None = None,
    gate: TokenBudget | None = None,
) -> ReviseSummary:
    """Run (or resume) the stage and write its datasets; `backend` overrides `config.backend`.

    `executor` (default: one made from `config.executor`, closed at the end) decides where
    the chunks run; a Ray executor builds the backend from the spec in each actor, so it
    takes no `backend`. `gate` (default: `config.budget.max_tokens` for this stage alone)
    counts the job's tokens and may stop it at a chunk boundary: then no dataset is written
    and the summary says `stopped`; a rerun resumes. Inputs and settings are checked before
    any model loads; the output directory is locked for the run.
    """
    from cai.executors import executor_for
    from cai.executors.recipes import ReviseRecipe
    from cai.files import DirectoryLock
    from cai.jobs import check_fingerprint

    started = time.monotonic()
    out = Path(config.out)
    if gate is None:
        gate = TokenBudget(config.budget.max_tokens, "revise")
    with DirectoryLock(out, "revise output directory"):
        total = check_revise_inputs(config)
        plan = _plan(config)
        if not config.overwrite:
            fingerprint = _fingerprint(plan, "")
            check_fingerprint(out / "work", fingerprint, config.chunk_size, ignore=["model"])
        recipe = ReviseRecipe.from_parts(
            _backend_spec(config, out),
            plan.constitution,
            plan.templates,
            plan.critique,
            plan.response,
        )
        with (
            executor_for(config.executor, executor) as chosen,
            chosen.open(recipe, backend=backend) as session,
        ):
            stats = _run_chains(config, plan, session, out, total, gate)
            model_id, tokens = session.model_id, gate.ledger.total("revise")
            if stats.stopped:
                return _stopped_summary(config, plan, model_id, out, stats, total, started, tokens)
            return _write_datasets(config, plan, model_id, out, stats, started, tokens)


def _save_run_files(config: ReviseConfig, summary: ReviseSummary, out: Path) -> None:
    """The resolved config and summary, with paths relative to `out` (they travel with the data).

    Saved without overwrite, so rerunning from the config file resumes rather than discards.
    """
    from cai.config import save_resolved
    from cai.files import atomic_write_json, relative_to_run

    data = config.model_dump(mode="json", exclude={"overwrite"})
    save_resolved(
        data,
        out,
        ("prompts", "templates", "constitution", "out", "backend.model", "backend.cache_path"),
    )
    written = summary.model_dump(mode="json")
    for key in ("sft_path", "flagged_path", "preferences_path"):
        written[key] = relative_to_run(written.get(key), out)
    atomic_write_json(out / "summary.json", written)


def read_summary(out: str | Path) -> dict[str, Any]:
    """The summary.json of a finished run."""
    return json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))


def iter_chains(out: str | Path) -> Iterable[RevisionChain]:
    """The raw chains stored by a finished run, in input order."""
    from cai.jobs import iter_job_results

    for row in iter_job_results(Path(out) / "work", "revise"):
        yield RevisionChain.model_validate(row)


def check_revise_inputs(config: ReviseConfig) -> int:
    """Validate every prompt, the constitution and the templates before a model loads.

    Returns the number of prompts; an empty prompts file is an error, not a run of nothing.
    """
    from cai.constitution import load_constitution
    from cai.constitution.usage import require_use
    from cai.io import count_prompts
    from cai.templates import TemplateSet

    count = count_prompts(config.prompts, config.prompt_column, config.limit)
    require_use(load_constitution(config.constitution), "revise")
    TemplateSet(config.templates)
    return count
