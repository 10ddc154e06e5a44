"""`cai revise`: the revise stage alone, through the one runner, from its own settings file.

`cai revise` reads one `ReviseConfig` (the stage's settings plus its inputs, at the top level
of its YAML file); it runs as a pipeline of that one stage whose output directory is the
stage's own, and its resolved config is written back in the shape it was read, so
`cai revise --config OUT/config.resolved.yaml` reruns (and resumes) the same job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cai.backends.base import Backend
from cai.config import ConfigError, save_resolved
from cai.pipeline.config import PipelineConfig, PromptSource
from cai.pipeline.run import run_pipeline
from cai.stages.revise import COMMAND_INPUTS, SUMMARY_PATHS, ReviseConfig, ReviseSummary

_PATH_KEYS = ("prompts", "templates", "constitution", "out", "backend.model", "backend.cache_path")


def revise_pipeline(config: ReviseConfig) -> PipelineConfig:
    """The one-stage pipeline `cai revise` runs: its inputs at the top, its directory `out`."""
    for key in ("prompts", "out"):
        if getattr(config, key) is None:
            raise ConfigError(
                "required setting is missing",
                key=key,
                fix="Set it in the YAML file, with a flag, or with --set key=value.",
            )
    assert config.prompts is not None and config.out is not None
    policy = config.backend
    if config.cache and policy.cache_path is None:
        policy = policy.model_copy(update={"cache_path": str(Path(config.out) / "calls.sqlite")})
    settings = config.model_dump(exclude=set(COMMAND_INPUTS))
    return PipelineConfig(
        name="cai revise",
        output_dir=config.out,
        stages=["revise"],
        prompts=PromptSource(path=config.prompts, column=config.prompt_column, limit=config.limit),
        constitution=config.constitution,
        templates=config.templates,
        policy=policy,
        budget=config.budget,
        chunk_size=config.chunk_size,
        executor=config.executor,
        overwrite=config.overwrite,
        revise=ReviseConfig.model_validate(settings),
    )


def revise_config_saver(config: ReviseConfig) -> Callable[[Path], object]:
    """Writes `config.resolved.yaml` in `cai revise`'s own shape (paths relative to it)."""
    data = config.model_dump(mode="json", exclude={"overwrite"})
    return lambda out: save_resolved(data, out, _PATH_KEYS)


def run_revise(config: ReviseConfig, backend: Backend | None = None) -> ReviseSummary:
    """Run (or resume) `cai revise` and return its stage summary, with its paths as the
    caller can open them; `backend` overrides `config.backend` (the caller closes it)."""
    result = run_pipeline(
        revise_pipeline(config), policy_backend=backend, save_config=revise_config_saver(config)
    )
    summary = ReviseSummary.model_validate(result.summary["stages"]["revise"])
    out = Path(result.output_dir)
    return summary.model_copy(
        update={k: str(out / v) for k in SUMMARY_PATHS if (v := getattr(summary, k)) is not None}
    )
