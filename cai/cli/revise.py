"""`cai revise`: SL-CAI critique -> revision chains into an SFT dataset, through the one
runner (`cai.pipeline.revise`), from a settings file whose keys are the revise settings."""

from __future__ import annotations

import typer

from cai.cli.options import (
    ActorsOpt,
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    ConstitutionOpt,
    ExecutorOpt,
    FormatOpt,
    LimitOpt,
    OutOpt,
    OverwriteOpt,
    PolicyModelOpt,
    PromptColumnOpt,
    SeedOpt,
    SetOpt,
    TemplatesOpt,
    TokenBudgetOpt,
)
from cai.cli.run import run_and_report, run_options


def register(app: typer.Typer) -> None:
    @app.command()
    def revise(
        prompts: str | None = typer.Argument(
            None, help="Prompts file (.jsonl/.csv/.parquet) or save_to_disk directory."
        ),
        out: OutOpt = None,
        config: ConfigOpt = None,
        constitution: ConstitutionOpt = None,
        model: PolicyModelOpt = None,
        backend: BackendOpt = None,
        base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        rounds: int | None = typer.Option(None, help="Critique -> revision rounds per prompt."),
        seed: SeedOpt = None,
        limit: LimitOpt = None,
        prompt_column: PromptColumnOpt = None,
        templates: TemplatesOpt = None,
        guard_policy: str | None = typer.Option(
            None, help="What to do with flagged rows: keep | drop | split."
        ),
        fmt: FormatOpt = None,
        preferences: bool | None = typer.Option(
            None, "--preferences/--no-preferences", help="Also write revised-vs-initial pairs."
        ),
        executor: ExecutorOpt = None,
        actors: ActorsOpt = None,
        token_budget: TokenBudgetOpt = None,
        overwrite: OverwriteOpt = None,
        overrides: SetOpt = [],  # noqa: B006
    ) -> None:
        """Critique and revise the policy's answers against constitution principles."""
        from cai.config import load_config
        from cai.pipeline import revise_config_saver, revise_pipeline
        from cai.stages.revise import ReviseConfig

        options = {
            "prompts": prompts,
            "out": out,
            "constitution": constitution,
            "backend.model": model,
            "backend.kind": backend,
            "backend.base_urls": base_url or None,
            "rounds": rounds,
            "seed": seed,
            "limit": limit,
            "prompt_column": prompt_column,
            "templates": templates,
            "guards.policy": guard_policy,
            "format": fmt,
            "preferences": preferences,
            **run_options(executor, actors, token_budget, overwrite),
        }
        settings = load_config(ReviseConfig, config, options, overrides)
        run_and_report(revise_pipeline(settings), save_config=revise_config_saver(settings))
