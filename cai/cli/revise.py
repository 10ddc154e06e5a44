"""`cai revise`: SL-CAI critique -> revision chains into an SFT dataset, through the one
runner (`cai.pipeline.revise`), from a settings file whose keys are the revise settings."""

from __future__ import annotations

from typing import Any

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    ConstitutionOpt,
    FormatOpt,
    LimitOpt,
    OutOpt,
    PolicyModelOpt,
    PromptColumnOpt,
    SeedOpt,
    TemplatesOpt,
)
from cai.cli.run import backend_options, labeling_command, run_and_report


def register(app: typer.Typer) -> None:
    @app.command()
    @labeling_command
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
        *,
        shared: dict[str, Any],
        overrides: list[str],
    ) -> None:
        """Critique and revise the policy's answers against constitution principles."""
        from cai.config import load_config
        from cai.pipeline import revise_config_saver, revise_pipeline
        from cai.stages.revise import ReviseConfig

        options = {
            "prompts": prompts,
            "out": out,
            "constitution": constitution,
            **backend_options("backend", model, backend, base_url),
            "rounds": rounds,
            "seed": seed,
            "limit": limit,
            "prompt_column": prompt_column,
            "templates": templates,
            "guards.policy": guard_policy,
            "format": fmt,
            "preferences": preferences,
            **shared,
        }
        settings = load_config(ReviseConfig, config, options, overrides)
        run_and_report(revise_pipeline(settings), save_config=revise_config_saver(settings))
