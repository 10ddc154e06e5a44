"""`cai judge`: pairwise AI judgments of samples -> TRL-ready preference dataset."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def judge(
        samples: str = typer.Argument(..., help="Samples directory (from cai sample) or .jsonl."),
        out: str = typer.Option(..., "--out", "-o", help="Output directory."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="Pipeline YAML to start from."
        ),
        constitution: str | None = typer.Option(None, help="Bundled name or YAML path."),
        templates: str | None = typer.Option(None, help="Directory overriding bundled templates."),
        model: str | None = typer.Option(None, help="Judge model (path or embedded name)."),
        backend: str | None = typer.Option(None, help="vllm | openai | transformers."),
        base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible /v1 URL."),
        principles: int | None = typer.Option(None, help="Principles per pair (ensemble size)."),
        seed: int | None = typer.Option(None, help="Seed of the principle choice."),
        cot: bool | None = typer.Option(None, "--cot/--no-cot", help="Chain-of-thought judging."),
        min_confidence: float | None = typer.Option(None, help="Drop pairs with |p-0.5| below."),
        require_orders_agree: bool | None = typer.Option(
            None, "--require-orders-agree", help="Drop pairs whose two orders disagree."
        ),
        kwise: str | None = typer.Option(None, help="n>2 responses: best_vs_worst | all_pairs."),
        fmt: str | None = typer.Option(None, "--format", help="save_to_disk | parquet | jsonl."),
        push_to_hub: str | None = typer.Option(None, help="Also push to this Hub dataset repo."),
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
        """Label sample pairs with the judge against a constitution (resumable)."""
        from cai.cli.run import execute

        options = {
            "stages": ["judge", "preferences"],
            "samples": samples,
            "output_dir": out,
            "constitution": constitution,
            "templates": templates,
            "judge_backend.model": model,
            "judge_backend.kind": backend,
            "judge_backend.base_urls": base_url or None,
            "judge.principles_per_pair": principles,
            "judge.seed": seed,
            "judge.chain_of_thought": cot,
            "preferences.min_confidence": min_confidence,
            "preferences.require_orders_agree": require_orders_agree,
            "preferences.kwise": kwise,
            "preferences.format": fmt,
            "preferences.push_to_hub": push_to_hub,
            "overwrite": overwrite,
            "budget.max_tokens": token_budget,
            "executor.kind": executor,
            "executor.actors": actors,
        }
        execute(config, options, list(overrides))
