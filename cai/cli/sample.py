"""`cai sample`: n policy responses per prompt into a resumable samples directory."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def sample(
        prompts: str = typer.Argument(
            ..., help="Prompts .jsonl/.csv/.parquet or save_to_disk dir."
        ),
        out: str = typer.Option(..., "--out", "-o", help="Output directory (samples/ inside)."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="Pipeline YAML to start from."
        ),
        model: str | None = typer.Option(None, help="Policy model (path or embedded name)."),
        backend: str | None = typer.Option(None, help="vllm | openai | transformers."),
        base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible /v1 URL."),
        n: int | None = typer.Option(None, "--n", help="Responses per prompt."),
        temperature: float | None = typer.Option(None),
        top_p: float | None = typer.Option(None),
        max_tokens: int | None = typer.Option(None),
        seed: int | None = typer.Option(None),
        limit: int | None = typer.Option(None, help="Only the first N prompts."),
        prompt_column: str | None = typer.Option(None, help="Column holding the prompt."),
        chunk_size: int | None = typer.Option(None, help="Prompts per resumable chunk."),
        executor: str | None = typer.Option(
            None, "--executor", help="Where chunks run: local (this process) | ray (actors)."
        ),
        actors: int | None = typer.Option(
            None, "--actors", help="Ray actors, one model each (with --executor ray)."
        ),
        token_budget: int | None = typer.Option(
            None,
            "--token-budget",
            help="Stop at a chunk boundary before the run spends more tokens (budget.max_tokens).",
        ),
        overwrite: bool | None = typer.Option(None, "--overwrite"),
        overrides: list[str] = typer.Option([], "--set", help="dotted.key=value settings."),
    ) -> None:
        """Sample responses from the policy model (rerun to resume an interrupted run)."""
        from cai.cli.run import execute

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
            "overwrite": overwrite,
            "budget.max_tokens": token_budget,
            "executor.kind": executor,
            "executor.actors": actors,
        }
        execute(config, options, list(overrides))
