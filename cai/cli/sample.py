"""`cai sample`: n policy responses per prompt into a resumable samples directory."""

from __future__ import annotations

import typer

from cai.cli.options import (
    ActorsOpt,
    BackendOpt,
    BaseUrlOpt,
    ConfigOpt,
    ExecutorOpt,
    LimitOpt,
    OverwriteOpt,
    PolicyModelOpt,
    PromptColumnOpt,
    SeedOpt,
    SetOpt,
    TokenBudgetOpt,
)
from cai.cli.run import execute, run_options


def register(app: typer.Typer) -> None:
    @app.command()
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
        executor: ExecutorOpt = None,
        actors: ActorsOpt = None,
        token_budget: TokenBudgetOpt = None,
        overwrite: OverwriteOpt = None,
        overrides: SetOpt = [],  # noqa: B006
    ) -> None:
        """Sample responses from the policy model (rerun to resume an interrupted run)."""
        options = {
            "stages": ["sample"],
            "output_dir": out,
            "prompts.path": prompts,
            "prompts.limit": limit,
            "prompts.column": prompt_column,
            "policy.model": model,
            "policy.kind": backend,
            "policy.base_urls": base_url or None,
            "sample.n": n,
            "sample.temperature": temperature,
            "sample.top_p": top_p,
            "sample.max_tokens": max_tokens,
            "sample.seed": seed,
            "chunk_size": chunk_size,
            **run_options(executor, actors, token_budget, overwrite),
        }
        execute(config, options, list(overrides))
