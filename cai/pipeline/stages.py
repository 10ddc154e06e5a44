"""The pipeline's stages: each declares what it reads and writes, checks, then runs.

A stage is a `Stage` in the constant `STAGES` table: `check` runs for every listed stage before
any stage starts or any model loads (it validates inputs and refuses settings that differ
from results already in the output directory, so a doomed run fails in seconds and writes
nothing); `run` does the work and returns a typed summary. A new stage is a new entry here
and a name in `STAGE_NAMES`; a new judge method plugs in behind `PairwiseJudge`, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from cai.pipeline.config import STAGE_NAMES, PipelineConfigError
from cai.pipeline.context import RunContext
from cai.pipeline.summaries import JudgeSummary, PreferencesSummary, SampleSummary
from cai.revise import ReviseSummary


@dataclass(frozen=True)
class Stage:
    """One stage: its check, its work, and the run-directory entries it reads and writes."""

    name: str
    check: Callable[[RunContext], None]
    run: Callable[[RunContext], BaseModel]
    summary: type[BaseModel]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


def _check_executor(ctx: RunContext) -> None:
    """A Ray run on a machine without Ray fails here, before anything starts or is written."""
    if ctx.config.executor.kind == "ray":
        from cai.executors.ray import import_ray

        import_ray()


# ---- sample ---------------------------------------------------------------------------------
def _check_sample(ctx: RunContext) -> None:
    from cai.files import is_inside
    from cai.io import count_prompts
    from cai.jobs import check_fingerprint
    from cai.sample import sample_fingerprint

    if not is_inside(ctx.samples_dir, ctx.output_dir):
        raise PipelineConfigError(
            f"the sample stage would write into {ctx.samples_dir}, outside the output "
            f"directory {ctx.output_dir}; a run writes only inside its own directory",
            key="samples",
            fix="Drop `samples:` (samples then go to output_dir/samples), or drop the sample "
            "stage to judge those samples as they are.",
        )
    _check_executor(ctx)
    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    ctx.counts["prompts"] = count_prompts(source.path, source.column, source.limit)
    if not ctx.config.overwrite:
        fingerprint = sample_fingerprint("", ctx.config.sample)
        check_fingerprint(
            ctx.samples_dir, fingerprint, ctx.config.chunk_size, ignore=["policy_model"]
        )


def _sample_stage(ctx: RunContext) -> SampleSummary:
    from cai.io import iter_prompts
    from cai.pipeline.tokens import finish_stage, stage_gate
    from cai.sample import sample_prompts

    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    executor = ctx.executor()
    gate = stage_gate(ctx, "sample")
    stats = sample_prompts(
        ctx.policy() if ctx.runs_here else ctx.config.policy,
        iter_prompts(source.path, source.column, source.limit),
        ctx.samples_dir,
        ctx.config.sample,
        total=ctx.counts.get("prompts"),
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
        executor=executor,
        gate=gate,
    )
    finish_stage(ctx, gate, stats.stopped, ctx.counts.get("prompts"))
    return SampleSummary(
        **stats.model_dump(),
        samples_dir=ctx.rel(ctx.samples_dir),
        tokens=gate.ledger.total("sample"),
    )


# ---- judge ----------------------------------------------------------------------------------
def _check_judge(ctx: RunContext) -> None:
    from cai.constitution import load_constitution
    from cai.constitution.usage import require_use
    from cai.jobs import JOB_FILE, check_fingerprint, job_is_complete
    from cai.judge.stage import judge_fingerprint_settings
    from cai.pipeline.judges import check_panel, panel_fingerprint
    from cai.samples_input import validate_samples
    from cai.templates import TemplateSet

    check_panel(ctx)
    _check_executor(ctx)
    constitution = load_constitution(ctx.config.constitution)
    require_use(constitution, "judge")  # before any model loads
    templates = TemplateSet(ctx.config.templates)
    ctx.loaded["constitution"], ctx.loaded["templates"] = constitution, templates
    samples = ctx.samples_dir
    will_sample = "sample" in ctx.config.stages
    if not will_sample:
        if (samples / JOB_FILE).is_file():
            if not job_is_complete(samples):
                raise PipelineConfigError(
                    "the samples there are unfinished (the sample stage was interrupted or is "
                    "running)",
                    key="samples",
                    fix=f"Rerun the sample stage to finish {samples} first.",
                )
        elif not samples.exists():
            raise PipelineConfigError(
                f"{samples}: no samples there",
                key="samples",
                fix="Run the `sample` stage first (cai sample / cai run), or set `samples:` to a "
                "samples directory or a .jsonl/.csv/.parquet file of responses.",
            )
        else:
            ctx.counts["samples"] = validate_samples(samples)
    if not ctx.config.overwrite:
        fingerprint = judge_fingerprint_settings(
            "", constitution, templates, ctx.config.judge, panel=panel_fingerprint(ctx)
        )
        check_fingerprint(
            ctx.judgments_dir, fingerprint, ctx.config.chunk_size, ignore=["judge_model"]
        )


def _judge_stage(ctx: RunContext) -> JudgeSummary:
    from cai.jobs import job_fingerprint
    from cai.judge.stage import judge_samples
    from cai.pipeline.judges import panel_agreement, stage_judge
    from cai.pipeline.tokens import finish_stage, stage_gate
    from cai.sample import count_samples, iter_samples

    constitution = ctx.loaded["constitution"]
    templates = ctx.loaded["templates"]
    total = ctx.counts.get("samples")
    if total is None:
        total = count_samples(ctx.samples_dir)
    if total == 0:
        raise PipelineConfigError(
            "there are no samples to judge",
            key="samples",
            fix=f"Check {ctx.rel(ctx.samples_dir)}: it holds no rows.",
        )
    gate = stage_gate(ctx, "judge")
    with stage_judge(ctx, constitution, templates) as judge:
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
    finish_stage(ctx, gate, stats.stopped, total)
    fingerprint = job_fingerprint(ctx.judgments_dir) or {}
    ctx.provenance = {
        "judge_model": fingerprint.get("judge_model"),
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
        judge_health=None if stats.stopped else _judge_health(ctx),
        stopped=stats.stopped,
        tokens=gate.ledger.total("judge"),
        panel=None if stats.stopped else panel_agreement(ctx),
    )


def _judge_health(ctx: RunContext):
    """The judge's health over every judged pair, read back once per run (cai.judge.health)."""
    if "judge_health" not in ctx.loaded:
        from cai.jobs import job_fingerprint
        from cai.judge.health import judged_health
        from cai.judge.stage import iter_judged

        judge_model = (job_fingerprint(ctx.judgments_dir) or {}).get("judge_model")
        ctx.loaded["judge_health"] = judged_health(iter_judged(ctx.judgments_dir), judge_model)
    return ctx.loaded["judge_health"]


# ---- preferences ----------------------------------------------------------------------------
def _check_preferences(ctx: RunContext) -> None:
    from cai.jobs import job_is_complete

    if "judge" not in ctx.config.stages and not job_is_complete(ctx.judgments_dir):
        raise PipelineConfigError(
            f"{ctx.rel(ctx.judgments_dir)} holds no finished judgments",
            key="stages",
            fix="Add the `judge` stage (or run `cai judge`) before `preferences`.",
        )


def _preferences_stage(ctx: RunContext) -> PreferencesSummary:
    from cai.judge.stage import iter_judged
    from cai.pipeline.tokens import card_details
    from cai.preferences import (
        Provenance,
        build_preferences,
        dataset_card,
        push_to_hub,
        write_dataset,
    )

    config = ctx.config.preferences
    provenance = ctx.provenance or _provenance_from_job(ctx.judgments_dir)
    prov = Provenance(**{k: provenance.get(k) for k in Provenance.model_fields})
    rows_path = ctx.output_dir / "work" / "rows.jsonl"
    filtered_path = ctx.output_dir / "filtered.jsonl" if config.write_filtered else None
    counts = build_preferences(
        iter_judged(ctx.judgments_dir), config, prov, rows_path, filtered_path
    )
    inputs: dict[str, Any]
    if ctx.config.prompts is not None and "sample" in ctx.config.stages:
        inputs = ctx.config.prompts.model_dump(mode="json")
        inputs["path"] = ctx.rel(inputs["path"])
    else:
        inputs = {"samples": ctx.rel(ctx.samples_dir)}
    card = dataset_card(
        title=ctx.config.name,
        counts=counts,
        provenance=prov,
        details={
            "templates": provenance.get("templates"),
            "sampling": ctx.config.sample.model_dump(mode="json"),
            "judge": ctx.config.judge.model_dump(mode="json"),
            "filters": config.model_dump(mode="json", exclude={"push_to_hub", "private"}),
            "inputs": inputs,
            **card_details(ctx, counts.rows_written),
        },
        health=_judge_health(ctx),
    )
    destination = write_dataset(rows_path, ctx.dataset_path, config.format, card=card)
    if config.push_to_hub:
        push_to_hub(rows_path, config.push_to_hub, card, private=config.private)
    return PreferencesSummary(
        **counts.model_dump(exclude={"position_disagreement_rate"}),
        dataset=ctx.rel(destination),
        filtered_file=ctx.rel(filtered_path) if filtered_path else None,
    )


def _provenance_from_job(judgments_dir: Path) -> dict[str, Any]:
    """Provenance of a finished judging job (when `preferences` runs without `judge`)."""
    from cai.jobs import job_fingerprint

    fingerprint = job_fingerprint(judgments_dir)
    if fingerprint is None:
        raise PipelineConfigError(
            f"{judgments_dir} holds no judgments; run the `judge` stage first."
        )
    return {
        "judge_model": fingerprint.get("judge_model"),
        "constitution_name": fingerprint.get("constitution"),
        "constitution_hash": fingerprint.get("constitution_hash"),
        "templates": fingerprint.get("templates"),
    }


# ---- revise ---------------------------------------------------------------------------------
def _revise_config(ctx: RunContext):
    from cai.revise import ReviseConfig

    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    return ReviseConfig.from_settings(
        ctx.config.revise,
        prompts=source.path,
        prompt_column=source.column,
        limit=source.limit,
        out=str(ctx.output_dir / "revise"),
        constitution=ctx.config.constitution,
        templates=ctx.config.templates,
        backend=ctx.config.policy,
        chunk_size=ctx.config.chunk_size,
        executor=ctx.config.executor,
        overwrite=ctx.config.overwrite,
    )


def _check_revise(ctx: RunContext) -> None:
    from cai.revise import check_revise_inputs

    _check_executor(ctx)
    check_revise_inputs(_revise_config(ctx))


def _revise_stage(ctx: RunContext) -> ReviseSummary:
    """SL-CAI: critique -> revision chains into output_dir/revise (SFT data, optional pairs)."""
    from cai.pipeline.tokens import finish_stage, stage_gate
    from cai.revise import run_revise

    gate = stage_gate(ctx, "revise")
    summary = run_revise(
        _revise_config(ctx),
        backend=ctx.policy() if ctx.runs_here else None,
        executor=ctx.executor(),
        gate=gate,
    )
    finish_stage(ctx, gate, summary.stopped, summary.prompts)
    return summary.model_copy(
        update={
            k: ctx.rel(getattr(summary, k))
            for k in ("sft_path", "flagged_path", "preferences_path")
        }
    )


STAGES: MappingProxyType[str, Stage] = MappingProxyType(
    {
        "sample": Stage(
            "sample", _check_sample, _sample_stage, SampleSummary, ("prompts",), ("samples/",)
        ),
        "judge": Stage(
            "judge", _check_judge, _judge_stage, JudgeSummary, ("samples",), ("judgments/",)
        ),
        "preferences": Stage(
            "preferences",
            _check_preferences,
            _preferences_stage,
            PreferencesSummary,
            ("judgments/",),
            ("preferences", "filtered.jsonl", "work/rows.jsonl"),
        ),
        "revise": Stage(
            "revise",
            _check_revise,
            _revise_stage,
            ReviseSummary,
            ("prompts",),
            ("revise/",),
        ),
    }
)
assert tuple(STAGES) == STAGE_NAMES
