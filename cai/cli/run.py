"""`cai run pipeline.yaml`: sample -> judge -> preference dataset in one command.

Every setting lives in the pipeline config; flags here are typed shortcuts for dotted keys,
applied after the YAML (so flags win), and `--set` overrides win over both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

BUDGET_STOP_EXIT = 3
"""The exit status of a run the token budget stopped (rerun with a larger budget to go on)."""


def execute(
    config_path: Path | None, options: dict[str, Any], overrides: list[str]
) -> None:
    """Load (file < typed flags < --set), run and report."""
    from cai.logs import route_library_logs
    from cai.pipeline import format_summary, load_pipeline_config, run_pipeline

    config = load_pipeline_config(config_path, overrides, options)
    log_file = route_library_logs(config.output_dir)
    result = run_pipeline(config)
    typer.echo(format_summary(result))
    if log_file is not None:
        typer.echo(f"engine logs: {log_file}")
    if result.stopped:
        raise typer.Exit(BUDGET_STOP_EXIT)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        pipeline: Path = typer.Argument(..., help="Pipeline YAML (see examples/quickstart.yaml)."),
        out: str | None = typer.Option(None, "--out", "-o", help="Output directory."),
        prompts: str | None = typer.Option(None, help="Prompts file or save_to_disk directory."),
        limit: int | None = typer.Option(None, help="Only the first N prompts."),
        model: str | None = typer.Option(None, help="Policy model (path or embedded name)."),
        backend: str | None = typer.Option(
            None, help="Policy backend: vllm | openai | transformers."
        ),
        base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible /v1 URL."),
        judge_model: str | None = typer.Option(None, help="Judge model; default: the policy."),
        n: int | None = typer.Option(None, "--n", help="Responses per prompt."),
        seed: int | None = typer.Option(None, help="Seed for sampling and principle choice."),
        principles: int | None = typer.Option(None, help="Principles per pair (ensemble size)."),
        cot: bool | None = typer.Option(None, "--cot/--no-cot", help="Chain-of-thought judging."),
        min_confidence: float | None = typer.Option(None, help="Drop pairs with |p-0.5| below."),
        fmt: str | None = typer.Option(None, "--format", help="save_to_disk | parquet | jsonl."),
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
        overwrite: bool | None = typer.Option(
            None, "--overwrite", help="Discard earlier results in the output directory."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Any setting as dotted.key=value, e.g. judge.cot_band=[0.3,0.7]."
        ),
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
            "overwrite": overwrite,
            "budget.max_tokens": token_budget,
            "executor.kind": executor,
            "executor.actors": actors,
        }
        execute(pipeline, options, list(overrides))
