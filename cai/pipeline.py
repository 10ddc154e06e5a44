"""`cai run pipeline.yaml`: sample -> judge -> preference dataset from one config file.

The config is one pydantic model; YAML sets it, `key.path=value` overrides (and the CLI's
flags, which become overrides) win over YAML, and the resolved config is saved beside the
output. Stages are plain functions registered by name, run in the order the config lists
them, each reading the previous stage's directory; a new stage (e.g. `revise`) plugs in with
`register_stage` and a name in `stages:`.

Layout of `output_dir`:
  samples/            resumable sampling job (one Sample per prompt)
  judgments/          resumable judging job (one judged record per prompt)
  preferences/        the dataset (or preferences.parquet / preferences.jsonl) + card
  filtered.jsonl      every pair that was not written, with its reason
  config.resolved.yaml, summary.json
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from cai.backends import BackendSpec
from cai.backends.base import Backend
from cai.config import RESOLVED_CONFIG, ConfigError, load_config, resolve_beside, save_resolved
from cai.judge.compare import JudgeConfig
from cai.preferences import PreferenceConfig
from cai.revise import ReviseSettings
from cai.sample import SampleConfig

PipelineConfigError = ConfigError
"""The pipeline's settings or inputs are invalid (the one `cai.config.ConfigError`)."""


class PromptSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    column: str | None = None
    limit: int | None = Field(None, ge=1)


class PipelineConfig(BaseModel):
    """Everything a run needs. Relative input paths are looked up beside the YAML file first."""

    model_config = ConfigDict(extra="forbid")

    name: str = "cai-preferences"
    output_dir: str = "runs/preferences"
    stages: list[str] = Field(default_factory=lambda: ["sample", "judge", "preferences"])
    prompts: PromptSource | None = Field(None, description="needed by the sample stage")
    samples: str | None = Field(
        None, description="samples to judge (directory or .jsonl); default output_dir/samples"
    )
    constitution: str = "default"
    templates: str | None = Field(None, description="directory overriding bundled templates")
    policy: BackendSpec = Field(default_factory=BackendSpec)
    judge_backend: BackendSpec | None = Field(
        None, description="the judge model; None = the policy backend (one engine, reused)"
    )
    sample: SampleConfig = Field(default_factory=SampleConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    preferences: PreferenceConfig = Field(default_factory=PreferenceConfig)
    revise: ReviseSettings = Field(
        default_factory=ReviseSettings, description="SL-CAI critique -> revision stage"
    )
    chunk_size: int = Field(
        64, ge=1, description="prompts per resumable chunk (and per engine batch)"
    )
    overwrite: bool = Field(False, description="discard earlier results in output_dir")

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known stages: {list(STAGES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"stages {value} lists a stage twice")
        return value

    @model_validator(mode="after")
    def _inputs_present(self) -> PipelineConfig:
        needs_prompts = [s for s in ("sample", "revise") if s in self.stages]
        if needs_prompts and self.prompts is None:
            raise ValueError(
                f"the {' and '.join(needs_prompts)} stage needs prompts: set prompts.path (a .jsonl/.csv/.parquet "
                "file or a save_to_disk directory)"
            )
        return self


# ---- loading --------------------------------------------------------------------------------
def load_pipeline_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> PipelineConfig:
    """YAML file < typed flags (`options`, None = not given) < `--set` overrides, validated.

    Relative input paths that exist beside the YAML file are taken from there.
    """
    config = load_config(PipelineConfig, path, options, overrides or [])
    base = Path(path).resolve().parent if path is not None else None
    if config.prompts is not None:
        config.prompts.path = resolve_beside(config.prompts.path, base) or config.prompts.path
    config.samples = resolve_beside(config.samples, base)
    config.templates = resolve_beside(config.templates, base)
    if config.constitution.endswith((".yaml", ".yml")):
        config.constitution = resolve_beside(config.constitution, base) or config.constitution
    for spec in (config.policy, config.judge_backend):
        if spec is not None and spec.kind in ("vllm", "transformers"):
            spec.model = resolve_beside(spec.model, base) or spec.model
    return config


SUMMARY_FILE = "summary.json"
_PATH_KEYS = (
    "prompts.path",
    "samples",
    "templates",
    "constitution",
    "policy.model",
    "policy.cache_path",
    "judge_backend.model",
    "judge_backend.cache_path",
)


def save_resolved_config(config: PipelineConfig, output_dir: Path) -> Path:
    """The settings that made this directory's data, with paths relative to the directory.

    Loading it again resolves relative paths beside the file, so `cai run DIR/config.resolved.yaml
    --out DIR` reruns (and resumes) the same job; no absolute local path leaves the machine.
    """
    data = config.model_dump(mode="json", exclude={"overwrite", "output_dir"})
    return save_resolved(
        data, output_dir, _PATH_KEYS, header="output_dir: the directory holding this file"
    )


# ---- the run context ------------------------------------------------------------------------
@dataclass
class RunContext:
    """What stages share: the config, the output paths, lazily built backends, the summary."""

    config: PipelineConfig
    output_dir: Path
    policy_backend: Backend | None = None
    judge_backend: Backend | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, Any] = field(default_factory=dict)
    _owned: list[Backend] = field(default_factory=list)

    def policy(self) -> Backend:
        if self.policy_backend is None:
            from cai.backends import make_backend

            self.policy_backend = make_backend(self.config.policy)
            self._owned.append(self.policy_backend)
        return self.policy_backend

    def judge(self) -> Backend:
        if self.judge_backend is None:
            spec = self.config.judge_backend
            if spec is None or spec == self.config.policy:
                self.judge_backend = self.policy()
            else:
                from cai.backends import make_backend

                self.judge_backend = make_backend(spec)
                self._owned.append(self.judge_backend)
        return self.judge_backend

    def close(self) -> None:
        for backend in reversed(self._owned):
            backend.close()
        self._owned.clear()

    @property
    def samples_dir(self) -> Path:
        return Path(self.config.samples) if self.config.samples else self.output_dir / "samples"

    @property
    def judgments_dir(self) -> Path:
        return self.output_dir / "judgments"

    @property
    def dataset_path(self) -> Path:
        fmt = self.config.preferences.format
        name = {"save_to_disk": "preferences", "parquet": "preferences.parquet"}
        return self.output_dir / name.get(fmt, "preferences.jsonl")


Stage = Callable[[RunContext], dict[str, Any]]
StageCheck = Callable[[RunContext], None]
STAGES: dict[str, Stage] = {}
STAGE_CHECKS: dict[str, StageCheck] = {}


def register_stage(name: str, stage: Stage, check: StageCheck | None = None) -> None:
    """Make `name` usable in a config's `stages:` list.

    `check` runs for every listed stage before any stage starts or any model loads: it
    validates the stage's inputs and refuses settings that differ from the results already in
    the output directory, so a doomed run fails in seconds and writes nothing.
    """
    STAGES[name] = stage
    if check is not None:
        STAGE_CHECKS[name] = check


def _backend_calls(backend: Backend) -> dict[str, Any] | None:
    stats = getattr(backend, "stats", None)
    if stats is None:
        return None
    if isinstance(stats, BaseModel):
        return stats.model_dump(mode="json")
    if isinstance(stats, dict):
        return dict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def _rel(ctx: RunContext, path: str | Path | None) -> str | None:
    from cai.files import relative_to_run

    return relative_to_run(path, ctx.output_dir)


# ---- sample ---------------------------------------------------------------------------------
def _check_sample(ctx: RunContext) -> None:
    from cai.files import is_inside
    from cai.io import InputFormatError, iter_prompts
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
    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    count = sum(1 for _ in iter_prompts(source.path, source.column, source.limit))
    if count == 0:
        raise InputFormatError(
            "holds no prompts",
            file=source.path,
            fix="Add prompts (one JSON object per line, or one CSV row each), or fix the path.",
        )
    ctx.counts["prompts"] = count
    if not ctx.config.overwrite:
        fingerprint = sample_fingerprint("", ctx.config.sample)
        check_fingerprint(
            ctx.samples_dir, fingerprint, ctx.config.chunk_size, ignore=["policy_model"]
        )


def _sample_stage(ctx: RunContext) -> dict[str, Any]:
    from cai.io import iter_prompts
    from cai.sample import sample_prompts

    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    stats = sample_prompts(
        ctx.policy(),
        iter_prompts(source.path, source.column, source.limit),
        ctx.samples_dir,
        ctx.config.sample,
        total=ctx.counts.get("prompts"),
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
    )
    return {**stats.model_dump(), "samples_dir": _rel(ctx, ctx.samples_dir)}


# ---- judge ----------------------------------------------------------------------------------
def _check_judge(ctx: RunContext) -> None:
    from cai.constitution import load_constitution
    from cai.jobs import JOB_FILE, check_fingerprint, job_is_complete
    from cai.judge.stage import judge_fingerprint_settings
    from cai.samples_input import validate_samples
    from cai.templates import TemplateSet

    constitution = load_constitution(ctx.config.constitution)
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
            "", constitution, templates, ctx.config.judge
        )
        check_fingerprint(
            ctx.judgments_dir, fingerprint, ctx.config.chunk_size, ignore=["judge_model"]
        )


def _judge_stage(ctx: RunContext) -> dict[str, Any]:
    from cai.judge.compare import PairwiseJudge
    from cai.judge.stage import judge_samples
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
            fix=f"Check {_rel(ctx, ctx.samples_dir)}: it holds no rows.",
        )
    judge = PairwiseJudge(ctx.judge(), constitution, templates, ctx.config.judge)
    stats = judge_samples(
        judge,
        iter_samples(ctx.samples_dir),
        ctx.judgments_dir,
        total=total,
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
    )
    ctx.summary["provenance"] = {
        "judge_model": judge.backend.model_id,
        "constitution_name": constitution.name,
        "constitution_hash": constitution.content_hash,
        "templates": judge.templates.fingerprint(),
    }
    return {
        "prompts": stats.items_total,
        "prompts_judged_now": stats.items_processed,
        "prompts_resumed": stats.items_done_before,
        "choice_requests_scored_now": judge.requests_scored,
        "rationales_generated_now": judge.rationales_generated,
        "seconds": round(stats.seconds, 3),
    }


# ---- preferences ----------------------------------------------------------------------------
def _check_preferences(ctx: RunContext) -> None:
    from cai.jobs import job_is_complete

    if "judge" not in ctx.config.stages and not job_is_complete(ctx.judgments_dir):
        raise PipelineConfigError(
            f"{_rel(ctx, ctx.judgments_dir)} holds no finished judgments",
            key="stages",
            fix="Add the `judge` stage (or run `cai judge`) before `preferences`.",
        )


def _preferences_stage(ctx: RunContext) -> dict[str, Any]:
    from cai.judge.stage import iter_judged
    from cai.preferences import (
        Provenance,
        build_preferences,
        dataset_card,
        push_to_hub,
        write_dataset,
    )

    config = ctx.config.preferences
    provenance = ctx.summary.get("provenance") or _provenance_from_job(ctx.judgments_dir)
    prov = Provenance(**{k: provenance.get(k) for k in Provenance.model_fields})
    rows_path = ctx.output_dir / "work" / "rows.jsonl"
    filtered_path = ctx.output_dir / "filtered.jsonl" if config.write_filtered else None
    counts = build_preferences(
        iter_judged(ctx.judgments_dir), config, prov, rows_path, filtered_path
    )
    inputs: dict[str, Any]
    if ctx.config.prompts is not None and "sample" in ctx.config.stages:
        inputs = ctx.config.prompts.model_dump(mode="json")
        inputs["path"] = _rel(ctx, inputs["path"])
    else:
        inputs = {"samples": _rel(ctx, ctx.samples_dir)}
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
        },
    )
    destination = write_dataset(rows_path, ctx.dataset_path, config.format, card=card)
    if config.push_to_hub:
        push_to_hub(rows_path, config.push_to_hub, card, private=config.private)
    out = counts.model_dump()
    out["position_disagreement_rate"] = counts.position_disagreement_rate
    out["dataset"] = _rel(ctx, destination)
    out["filtered_file"] = _rel(ctx, filtered_path) if filtered_path else None
    return out


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
        overwrite=ctx.config.overwrite,
    )


def _check_revise(ctx: RunContext) -> None:
    from cai.revise import check_revise_inputs

    check_revise_inputs(_revise_config(ctx))


def _revise_stage(ctx: RunContext) -> dict[str, Any]:
    """SL-CAI: critique -> revision chains into output_dir/revise (SFT data, optional pairs)."""
    from cai.revise import run_revise

    summary = run_revise(_revise_config(ctx), backend=ctx.policy()).model_dump(mode="json")
    for key in ("sft_path", "flagged_path", "preferences_path"):
        summary[key] = _rel(ctx, summary.get(key))
    return summary


register_stage("sample", _sample_stage, _check_sample)
register_stage("judge", _judge_stage, _check_judge)
register_stage("preferences", _preferences_stage, _check_preferences)
register_stage("revise", _revise_stage, _check_revise)


class PipelineResult(BaseModel):
    output_dir: str
    dataset: str | None
    summary: dict[str, Any]


def _discard_run_files(output_dir: Path) -> None:
    """--overwrite: the old summary and config describe data about to be replaced."""
    for name in (SUMMARY_FILE, RESOLVED_CONFIG):
        (output_dir / name).unlink(missing_ok=True)


def run_pipeline(
    config: PipelineConfig,
    *,
    policy_backend: Backend | None = None,
    judge_backend: Backend | None = None,
) -> PipelineResult:
    """Run the configured stages; pass backends to reuse engines you already hold.

    Order: lock the output directory, check every stage's inputs and settings (no model is
    loaded, nothing is written), then write the resolved config, run, and write the summary.
    """
    from cai.files import DirectoryLock, atomic_write_json

    started = time.monotonic()
    output_dir = Path(config.output_dir)
    with DirectoryLock(output_dir):
        ctx = RunContext(
            config, output_dir, policy_backend=policy_backend, judge_backend=judge_backend
        )
        for name in config.stages:
            check = STAGE_CHECKS.get(name)
            if check is not None:
                check(ctx)
        if config.overwrite:
            _discard_run_files(output_dir)
        save_resolved_config(config, output_dir)
        try:
            stages: dict[str, Any] = {}
            for name in config.stages:
                stages[name] = STAGES[name](ctx)
            calls = {}
            if ctx.policy_backend is not None:
                calls["policy"] = _backend_calls(ctx.policy_backend)
            if ctx.judge_backend is not None and ctx.judge_backend is not ctx.policy_backend:
                calls["judge"] = _backend_calls(ctx.judge_backend)
        finally:
            ctx.close()
        summary = {
            "name": config.name,
            "stages": stages,
            "model_calls": calls,
            "wall_seconds": round(time.monotonic() - started, 3),
        }
        if "provenance" in ctx.summary:
            summary["provenance"] = ctx.summary["provenance"]
        atomic_write_json(output_dir / SUMMARY_FILE, summary)
    dataset = stages.get("preferences", {}).get("dataset")
    if dataset is not None:
        dataset = str(output_dir / dataset)
    return PipelineResult(output_dir=str(output_dir), dataset=dataset, summary=summary)


def format_summary(result: PipelineResult) -> str:
    """The human-readable end-of-run report (paths as the user can open them)."""
    import os

    def shown(path: str | None) -> str:
        return os.path.normpath(os.path.join(result.output_dir, path)) if path else "n/a"

    s = result.summary
    lines = [f"cai run {s['name']}: done in {s['wall_seconds']:.1f} s"]
    stages = s["stages"]
    if "sample" in stages:
        st = stages["sample"]
        lines.append(
            f"  sampled: {st['prompts']} prompts ({st['prompts_resumed']} resumed), "
            f"{st['responses']} responses, {st['truncated_responses']} hit max_tokens"
        )
    if "judge" in stages:
        st = stages["judge"]
        lines.append(
            f"  judged: {st['prompts']} prompts ({st['prompts_resumed']} resumed), "
            f"{st['choice_requests_scored_now']} answer scorings this run"
        )
    if "revise" in stages:
        st = stages["revise"]
        lines.append(
            f"  revised: {st['prompts']} prompts ({st['resumed']} resumed), {st['rounds']} "
            f"round(s); SFT data at {shown(st['sft_path'])}"
        )
    if "preferences" in stages:
        st = stages["preferences"]
        rate = st.get("position_disagreement_rate")
        mean = st.get("mean_prob_chosen")
        lines += [
            f"  pairs written: {st['rows_written']}",
            f"  filtered: {st['filtered'] or 'none'}"
            + (f" (see {shown(st['filtered_file'])})" if st.get("filtered_file") else ""),
            f"  judge failures: {st['judge_failures_by_kind'] or 'none'}",
            "  position disagreement (orders prefer different responses): "
            + ("n/a" if rate is None else f"{rate:.1%}"),
            "  mean confidence (prob_chosen): " + ("n/a" if mean is None else f"{mean:.3f}"),
        ]
    made = []
    if "sample" in stages:
        made.append(f"{stages['sample']['prompts_sampled_now']} generation requests")
    if "judge" in stages:
        st = stages["judge"]
        made.append(
            f"{st['choice_requests_scored_now'] + st['rationales_generated_now']} judge requests"
        )
    if made:
        lines.append("  model requests this run: " + ", ".join(made))
    for role, calls in (s.get("model_calls") or {}).items():
        if calls:
            served = calls.get("hits", 0)
            sent = calls.get("misses", 0)
            lines.append(
                f"  {role} call cache: {sent} sent to the model, {served} served from cache"
            )
    if "sample" in stages and "judge" not in stages:
        lines.append(f"samples: {shown(stages['sample']['samples_dir'])}")
    if result.dataset:
        lines.append(f"dataset: {result.dataset}")
    return "\n".join(lines)
