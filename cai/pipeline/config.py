"""The pipeline's settings: one pydantic model, loaded by the one config loader.

`load_pipeline_config` reads YAML < typed flags < `--set` (see `cai.config`), then looks up
relative input paths beside the YAML file; `save_resolved_config` writes what a run used,
with paths relative to the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cai.backends import BackendSpec, VLLMSpec
from cai.budget import BudgetConfig
from cai.config import load_config, resolve_beside, save_resolved
from cai.executors.config import ExecutorConfig
from cai.files import relative_to_run
from cai.judge.compare import JudgeConfig
from cai.judge.panel import PanelConfig
from cai.stages.preferences import PreferenceConfig
from cai.stages.revise import COMMAND_INPUTS, ReviseConfig
from cai.stages.sample import SampleConfig

#: The stages a config may list, in the order they usually run (`cai.pipeline.stages`).
STAGE_NAMES = ("sample", "judge", "preferences", "revise")


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
    policy: BackendSpec = Field(default_factory=VLLMSpec)
    judge_backend: BackendSpec | None = Field(
        None, description="the judge model; None = the policy backend (one engine, reused)"
    )
    judge_backends: list[BackendSpec] | None = Field(
        None,
        description="a panel of judge models, each with its own settings (instead of "
        "judge_backend); every pair is judged by each, see `panel`",
    )
    panel: PanelConfig = Field(
        default_factory=PanelConfig,
        description="how a panel's verdicts combine: weights, combine, min_members",
    )
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig,
        description="a token budget (max_tokens) and a price table for the cost report",
    )
    sample: SampleConfig = Field(default_factory=SampleConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    preferences: PreferenceConfig = Field(default_factory=PreferenceConfig)
    revise: ReviseConfig = Field(
        default_factory=ReviseConfig, description="SL-CAI critique -> revision stage"
    )
    chunk_size: int = Field(
        64, ge=1, description="prompts per resumable chunk (and per engine batch)"
    )
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig,
        description="where the sample, judge and revise chunks run: local (this process) or "
        "ray (a pool of actors, one backend each); the files written are the same",
    )
    overwrite: bool = Field(False, description="discard earlier results in output_dir")

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known stages: {list(STAGE_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"stages {value} lists a stage twice")
        return value

    @model_validator(mode="after")
    def _one_kind_of_judge(self) -> PipelineConfig:
        if self.judge_backends is not None and self.judge_backend is not None:
            raise ValueError(
                "judge_backend and judge_backends are both set; use judge_backend for one "
                "judge model or judge_backends for a panel, not both"
            )
        if self.judge_backends is not None:
            problems = self.panel.problems(len(self.judge_backends))
            if problems:
                raise ValueError("; ".join(problems))
        elif self.panel != PanelConfig():
            raise ValueError("panel settings need a panel: list the judges in judge_backends")
        return self

    @model_validator(mode="after")
    def _revise_inputs_from_the_top(self) -> PipelineConfig:
        given = sorted(COMMAND_INPUTS & self.revise.model_fields_set)
        if given:
            raise ValueError(
                f"revise.{given[0]} is a setting of `cai revise`; a pipeline sets it once for "
                "all its stages: use the top-level setting (the policy for revise.backend)"
            )
        return self

    @model_validator(mode="after")
    def _inputs_present(self) -> PipelineConfig:
        needs_prompts = [s for s in ("sample", "revise") if s in self.stages]
        if needs_prompts and self.prompts is None:
            raise ValueError(
                f"the {' and '.join(needs_prompts)} stage needs prompts: set prompts.path (a .jsonl/.csv/.parquet "
                "file or a save_to_disk directory)"
            )
        return self


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
    for spec in (config.policy, config.judge_backend, *(config.judge_backends or [])):
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
    "revise.out",
)


def save_resolved_config(config: PipelineConfig, output_dir: Path) -> Path:
    """The settings that made this directory's data, with paths relative to the directory.

    Loading it again resolves relative paths beside the file, so `cai run DIR/config.resolved.yaml
    --out DIR` reruns (and resumes) the same job; no absolute local path leaves the machine.
    """
    data = config.model_dump(
        mode="json", exclude={"overwrite": True, "output_dir": True, "revise": set(COMMAND_INPUTS)}
    )
    for spec in data.get("judge_backends") or []:  # list entries: not reached by dotted keys
        for key in ("model", "cache_path"):
            spec[key] = relative_to_run(spec.get(key), output_dir)
    return save_resolved(
        data, output_dir, _PATH_KEYS, header="output_dir: the directory holding this file"
    )
