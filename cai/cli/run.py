"""`cai run pipeline.yaml`: sample -> judge -> preference dataset in one command.

Every setting lives in the pipeline config; flags here are typed shortcuts for dotted keys,
applied after the YAML (so flags win), and `--set` overrides win over both. `cai sample`,
`cai judge` and `cai revise` run through the same `execute`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cai.cli.options import (
    ActorsOpt,
    BackendOpt,
    BaseUrlOpt,
    CotOpt,
    ExecutorOpt,
    FormatOpt,
    LimitOpt,
    MinConfidenceOpt,
    OutOpt,
    OverwriteOpt,
    PolicyModelOpt,
    PrinciplesOpt,
    SeedOpt,
    SetOpt,
    TokenBudgetOpt,
)

if TYPE_CHECKING:
    from cai.pipeline import PipelineConfig

BUDGET_STOP_EXIT = 3
"""The exit status of a run the token budget stopped (rerun with a larger budget to go on)."""


def run_options(
    executor: str | None, actors: int | None, token_budget: int | None, overwrite: bool | None
) -> dict[str, Any]:
    """The dotted settings of the flags every labeling command shares."""
    return {
        "overwrite": overwrite,
        "budget.max_tokens": token_budget,
        "executor.kind": executor,
        "executor.actors": actors,
    }


def execute(
    config_path: Path | None, options: dict[str, Any], overrides: list[str]
) -> None:
    """Load (file < typed flags < --set), run and report."""
    from cai.pipeline import load_pipeline_config

    run_and_report(load_pipeline_config(config_path, overrides, options))


def run_and_report(
    config: PipelineConfig, save_config: Callable[[Path], object] | None = None
) -> None:
    """Run through the one runner, print its report; exit 3 when the token budget stopped it."""
    from cai.logs import route_library_logs
    from cai.pipeline import format_summary, run_pipeline

    log_file = route_library_logs(config.output_dir)
    result = run_pipeline(config, save_config=save_config)
    typer.echo(format_summary(result))
    if log_file is not None:
        typer.echo(f"engine logs: {log_file}")
    if result.stopped:
        raise typer.Exit(BUDGET_STOP_EXIT)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        pipeline: Path = typer.Argument(..., help="Pipeline YAML (see examples/quickstart.yaml)."),
        out: OutOpt = None,
        prompts: str | None = typer.Option(None, help="Prompts file or save_to_disk directory."),
        limit: LimitOpt = None,
        model: PolicyModelOpt = None,
        backend: BackendOpt = None,
        base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        judge_model: str | None = typer.Option(None, help="Judge model; default: the policy."),
        n: int | None = typer.Option(None, "--n", help="Responses per prompt."),
        seed: SeedOpt = None,
        principles: PrinciplesOpt = None,
        cot: CotOpt = None,
        min_confidence: MinConfidenceOpt = None,
        fmt: FormatOpt = None,
        executor: ExecutorOpt = None,
        actors: ActorsOpt = None,
        token_budget: TokenBudgetOpt = None,
        overwrite: OverwriteOpt = None,
        overrides: SetOpt = [],  # noqa: B006
    ) -> None:
        """Run a pipeline file: sample -> judge -> TRL-ready preference dataset (resumable)."""
        options = {
            "output_dir": out,
            "prompts.path": prompts,
            "prompts.limit": limit,
            "policy.model": model,
            "policy.kind": backend,
            "policy.base_urls": base_url or None,
            "judge_backend.model": judge_model,
            "sample.n": n,
            "sample.seed": seed,
            "judge.seed": seed,
            "judge.principles_per_pair": principles,
            "judge.chain_of_thought": cot,
            "preferences.min_confidence": min_confidence,
            "preferences.format": fmt,
            **run_options(executor, actors, token_budget, overwrite),
        }
        execute(pipeline, options, list(overrides))
