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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cai.backends import BackendSpec
from cai.backends.base import Backend
from cai.judge.compare import JudgeConfig
from cai.preferences import PreferenceConfig
from cai.revise import ReviseSettings
from cai.sample import SampleConfig


class PipelineConfigError(ValueError):
    """The pipeline config (file or overrides) is invalid; the message says where and why."""


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


# ---- loading and overrides ------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """'judge.chain_of_thought=true' -> (['judge', 'chain_of_thought'], True) (YAML value)."""
    import yaml

    if "=" not in text:
        raise PipelineConfigError(
            f"override {text!r} must look like key.path=value, e.g. sample.n=4"
        )
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise PipelineConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise PipelineConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _resolve_input(value: str | None, base: Path | None) -> str | None:
    """A relative input path that exists beside the config file is taken from there."""
    if value is None or base is None:
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return value
    beside = base / path
    return str(beside) if beside.exists() else value


def load_pipeline_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> PipelineConfig:
    """Read YAML (optional), apply overrides, validate; errors name the bad key."""
    import yaml

    data: dict[str, Any] = {}
    base = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise PipelineConfigError(f"{path}: no such pipeline config file.")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise PipelineConfigError(f"{path}: not valid YAML ({err}).") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise PipelineConfigError(f"{path}: the top level must be a mapping of settings.")
        data = loaded or {}
        base = path.resolve().parent
    data = apply_overrides(data, list(overrides or []))
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        where = f"{path}" if path is not None else "pipeline config"
        raise PipelineConfigError(f"{where}: {problems}") from err
    if config.prompts is not None:
        config.prompts.path = _resolve_input(config.prompts.path, base) or config.prompts.path
    config.samples = _resolve_input(config.samples, base)
    config.templates = _resolve_input(config.templates, base)
    if config.constitution.endswith((".yaml", ".yml")):
        config.constitution = _resolve_input(config.constitution, base) or config.constitution
    return config


def save_resolved_config(config: PipelineConfig, output_dir: Path) -> Path:
    import yaml

    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "config.resolved.yaml"
    data = config.model_dump(mode="json", exclude={"overwrite"})
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


# ---- the run context ------------------------------------------------------------------------
@dataclass
class RunContext:
    """What stages share: the config, the output paths, lazily built backends, the summary."""

    config: PipelineConfig
    output_dir: Path
    policy_backend: Backend | None = None
    judge_backend: Backend | None = None
    summary: dict[str, Any] = field(default_factory=dict)
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
STAGES: dict[str, Stage] = {}


def register_stage(name: str, stage: Stage) -> None:
    """Make `name` usable in a config's `stages:` list."""
    STAGES[name] = stage


def _backend_calls(backend: Backend) -> dict[str, Any] | None:
    stats = getattr(backend, "stats", None)
    if stats is None:
        return None
    if isinstance(stats, BaseModel):
        return stats.model_dump(mode="json")
    if isinstance(stats, dict):
        return dict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def _sample_stage(ctx: RunContext) -> dict[str, Any]:
    from cai.io import count_rows, iter_prompts
    from cai.sample import sample_prompts

    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    # Read the first prompt and count rows before starting an engine: bad input fails fast.
    next(iter_prompts(source.path, source.column, 1), None)
    total = count_rows(source.path, source.limit)
    stats = sample_prompts(
        ctx.policy(),
        iter_prompts(source.path, source.column, source.limit),
        ctx.samples_dir,
        ctx.config.sample,
        source={
            "path": str(Path(source.path).resolve()),
            "column": source.column,
            "limit": source.limit,
        },
        total=total,
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
    )
    return {**stats.model_dump(), "samples_dir": str(ctx.samples_dir)}


def _judge_stage(ctx: RunContext) -> dict[str, Any]:
    from cai.constitution import load_constitution
    from cai.judge.compare import PairwiseJudge
    from cai.judge.stage import judge_samples
    from cai.sample import count_samples, iter_samples
    from cai.templates import TemplateSet

    # Inputs first, engine last: a wrong path fails before a model is loaded.
    samples_identity = _samples_identity(ctx.samples_dir)
    constitution = load_constitution(ctx.config.constitution)
    templates = TemplateSet(ctx.config.templates)
    judge = PairwiseJudge(ctx.judge(), constitution, templates, ctx.config.judge)
    stats = judge_samples(
        judge,
        iter_samples(ctx.samples_dir),
        ctx.judgments_dir,
        source={"samples": samples_identity},
        total=count_samples(ctx.samples_dir),
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


def _samples_identity(path: Path) -> Any:
    """What identifies the samples being judged (for the judging job's resume check)."""
    if (path / "job.json").is_file():
        return json.loads((path / "job.json").read_text())["fingerprint"]
    if path.is_file():
        info = path.stat()
        return {"path": str(path.resolve()), "bytes": info.st_size, "mtime": info.st_mtime}
    raise PipelineConfigError(
        f"{path}: no samples there. Run the `sample` stage first (cai sample / cai run), "
        "or set `samples:` to a samples directory or .jsonl file."
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
    card = dataset_card(
        title=ctx.config.name,
        counts=counts,
        provenance=prov,
        details={
            "templates": provenance.get("templates"),
            "sampling": ctx.config.sample.model_dump(mode="json"),
            "judge": ctx.config.judge.model_dump(mode="json"),
            "filters": config.model_dump(mode="json", exclude={"push_to_hub", "private"}),
            "inputs": ctx.config.prompts.model_dump(mode="json")
            if ctx.config.prompts is not None
            else {"samples": str(ctx.samples_dir)},
        },
    )
    destination = write_dataset(rows_path, ctx.dataset_path, config.format, card=card)
    if config.push_to_hub:
        push_to_hub(rows_path, config.push_to_hub, card, private=config.private)
    out = counts.model_dump()
    out["position_disagreement_rate"] = counts.position_disagreement_rate
    out["dataset"] = str(destination)
    out["filtered_file"] = str(filtered_path) if filtered_path else None
    return out


def _provenance_from_job(judgments_dir: Path) -> dict[str, Any]:
    """Provenance of a finished judging job (when `preferences` runs without `judge`)."""
    job = judgments_dir / "job.json"
    if not job.exists():
        raise PipelineConfigError(
            f"{judgments_dir} holds no judgments; run the `judge` stage first."
        )
    fingerprint = json.loads(job.read_text())["fingerprint"]
    return {
        "judge_model": fingerprint.get("judge_model"),
        "constitution_name": fingerprint.get("constitution"),
        "constitution_hash": fingerprint.get("constitution_hash"),
        "templates": fingerprint.get("templates"),
    }


def _revise_stage(ctx: RunContext) -> dict[str, Any]:
    """SL-CAI: critique -> revision chains into output_dir/revise (SFT data, optional pairs)."""
    from cai.revise import ReviseConfig, run_revise

    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    config = ReviseConfig.from_settings(
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
    return run_revise(config, backend=ctx.policy()).model_dump(mode="json")


register_stage("sample", _sample_stage)
register_stage("judge", _judge_stage)
register_stage("preferences", _preferences_stage)
register_stage("revise", _revise_stage)


class PipelineResult(BaseModel):
    output_dir: str
    dataset: str | None
    summary: dict[str, Any]


def run_pipeline(
    config: PipelineConfig,
    *,
    policy_backend: Backend | None = None,
    judge_backend: Backend | None = None,
) -> PipelineResult:
    """Run the configured stages; pass backends to reuse engines you already hold."""
    started = time.monotonic()
    output_dir = Path(config.output_dir)
    save_resolved_config(config, output_dir)
    ctx = RunContext(config, output_dir, policy_backend=policy_backend, judge_backend=judge_backend)
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
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    dataset = stages.get("preferences", {}).get("dataset")
    return PipelineResult(output_dir=str(output_dir), dataset=dataset, summary=summary)


def format_summary(result: PipelineResult) -> str:
    """The human-readable end-of-run report."""
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
            f"round(s); SFT data at {st['sft_path']}"
        )
    if "preferences" in stages:
        st = stages["preferences"]
        rate = st.get("position_disagreement_rate")
        mean = st.get("mean_prob_chosen")
        lines += [
            f"  pairs written: {st['rows_written']}",
            f"  filtered: {st['filtered'] or 'none'}"
            + (f" (see {st['filtered_file']})" if st.get("filtered_file") else ""),
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
        lines.append(f"samples: {stages['sample']['samples_dir']}")
    if result.dataset:
        lines.append(f"dataset: {result.dataset}")
    return "\n".join(lines)
