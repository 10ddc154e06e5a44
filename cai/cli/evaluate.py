"""`cai eval winrate`: judged win rate of a policy against a baseline."""

from __future__ import annotations

from pathlib import Path

import typer

eval_app = typer.Typer(
    help="Evaluate policies with the constitutional judge.", no_args_is_help=True
)


@eval_app.command("winrate")
def winrate(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of WinRateConfig settings."
    ),
    prompts: str | None = typer.Option(None, help="Held-out prompts (.jsonl/.csv/.parquet)."),
    policy: str | None = typer.Option(None, help="Policy model (path or name)."),
    baseline: str | None = typer.Option(None, help="Baseline model (path or name)."),
    judge: str | None = typer.Option(None, help="Judge model (path or name)."),
    backend: str | None = typer.Option(
        None, help="Backend kind for all three models: vllm, openai or transformers."
    ),
    constitution: str | None = typer.Option(None, help="Constitution file or bundled name."),
    limit: int | None = typer.Option(None, help="Use only the first N prompts."),
    output_dir: str | None = typer.Option(None, "--output-dir", "-o"),
    overrides: list[str] = typer.Option(
        [], "--set", help="Any setting as dotted.key=value (repeatable), e.g. tie_margin=0.02."
    ),
) -> None:
    """Generate with policy and baseline, judge each pair in both orders, report with a CI."""
    from cai.config import load_config
    from cai.evaluate import WinRateConfig, run_win_rate
    from cai.logs import route_library_logs

    options = {
        "prompts": prompts,
        "policy.model": policy,
        "baseline.model": baseline,
        "judge.model": judge,
        "constitution": constitution,
        "limit": limit,
        "output_dir": output_dir,
    }
    if backend is not None:
        options.update({f"{role}.kind": backend for role in ("policy", "baseline", "judge")})
    settings = load_config(WinRateConfig, config, options, overrides)
    route_library_logs(settings.output_dir)
    report = run_win_rate(settings)
    s = report.summary
    typer.echo(
        f"win rate {s.win_rate if s.win_rate is None else f'{s.win_rate:.3f}'} "
        f"(CI {s.win_rate_ci}); wins/ties/losses {s.wins}/{s.ties}/{s.losses}; "
        f"failed {s.n_failed} -> {settings.output_dir}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
