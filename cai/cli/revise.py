"""`cai revise`: SL-CAI critique -> revision chains into an SFT dataset."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def revise(
        prompts: str | None = typer.Argument(
            None, help="Prompts file (.jsonl/.csv/.parquet) or save_to_disk directory."
        ),
        out: str | None = typer.Option(None, "--out", "-o", help="Output directory."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="YAML file of ReviseConfig settings."
        ),
        constitution: str | None = typer.Option(None, help="Bundled name or YAML path."),
        model: str | None = typer.Option(None, help="Policy model (path or embedded name)."),
        backend: str | None = typer.Option(None, help="vllm | openai | transformers."),
        base_url: list[str] = typer.Option(
            [], "--base-url", help="OpenAI-compatible /v1 URL (repeatable)."
        ),
        rounds: int | None = typer.Option(None, help="Critique -> revision rounds per prompt."),
        seed: int | None = typer.Option(None),
        limit: int | None = typer.Option(None, help="Only the first N prompts."),
        prompt_column: str | None = typer.Option(None),
        templates: str | None = typer.Option(None, help="Directory overriding bundled templates."),
        guard_policy: str | None = typer.Option(
            None, help="What to do with flagged rows: keep | drop | split."
        ),
        fmt: str | None = typer.Option(None, "--format", help="disk | parquet | jsonl."),
        preferences: bool | None = typer.Option(
            None, "--preferences/--no-preferences", help="Also write revised-vs-initial pairs."
        ),
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
            None, "--overwrite", help="Discard earlier results in --out and start again."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Any setting as dotted.key=value, e.g. revision.max_tokens=512."
        ),
    ) -> None:
        """Critique and revise the policy's answers against constitution principles."""
        from cai.budget import TokenBudget, tokens_report
        from cai.cli.run import BUDGET_STOP_EXIT
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.pipeline.tokens import stop_message
        from cai.revise import ReviseConfig, run_revise

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
            "overwrite": overwrite,
            "budget.max_tokens": token_budget,
            "executor.kind": executor,
            "executor.actors": actors,
        }
        settings = load_config(ReviseConfig, config, options, overrides)
        route_library_logs(settings.out)
        gate = TokenBudget(settings.budget.max_tokens, "revise")
        summary = run_revise(settings, gate=gate)
        report = tokens_report(gate.ledger, settings.budget, labels=None)
        for line in [*summary.lines(), *report.lines()]:
            typer.echo(line)
        if summary.stopped:
            typer.echo(stop_message(gate, summary.prompts))
            raise typer.Exit(BUDGET_STOP_EXIT)
