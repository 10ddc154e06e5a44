"""`cai sample`: n policy responses per prompt into a resumable samples directory."""

from __future__ import annotations

from typing import Any

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    LimitOpt,
    PolicyModelOpt,
    PromptColumnOpt,
    SeedOpt,
)
from cai.cli.run import backend_options, execute, labeling_command


def register(app: typer.Typer) -> None:
    @app.command()
    @labeling_command
    def sample(
        prompts: str = typer.Argument(
            ..., help="Prompts .jsonl/.csv/.parquet or save_to_disk dir."
        ),
        out: str = typer.Option(..., "--out", "-o", help="Output directory (samples/ inside)."),
        config: ConfigOpt = None,
        model: PolicyModelOpt = None,
        backend: BackendOpt = None,
        base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        n: int | None = typer.Option(None, "--n", help="Responses per prompt."),
        temperature: float | None = typer.Option(None),
        top_p: float | None = typer.Option(None),
        max_tokens: int | None = typer.Option(None),
        seed: SeedOpt = None,
        limit: LimitOpt = None,
        prompt_column: PromptColumnOpt = None,
        chunk_size: int | None = typer.Option(None, help="Prompts per resumable chunk."),
        *,
        shared: dict[str, Any],
        overrides: list[str],
    ) -> None:
        """Sample responses from the policy model (rerun to resume an interrupted run)."""
        options = {
            "stages": ["sample"],
            "output_dir": out,
            "prompts.path": prompts,
            "prompts.limit": limit,
            "prompts.column": prompt_column,
            **backend_options("policy", model, backend, base_url),
            "sample.n": n,
            "sample.temperature": temperature,
            "sample.top_p": top_p,
            "sample.max_tokens": max_tokens,
            "sample.seed": seed,
            "chunk_size": chunk_size,
            **shared,
        }
        execute(config, options, overrides)
