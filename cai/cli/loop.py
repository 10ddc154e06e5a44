"""`cai loop loop.yaml`: iterative RLAIF rounds, resumable, with a per-round report."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli.options import OutOpt, PrivateOpt, PushToHubOpt, ReportToOpt, SetOpt


def register(app: typer.Typer) -> None:
    @app.command()
    def loop(
        config: Path = typer.Argument(..., help="Loop YAML (see examples/loop.yaml)."),
        out: OutOpt = None,
        rounds: int | None = typer.Option(None, help="Number of rounds."),
        report_to: ReportToOpt = [],  # noqa: B006 - click passes a fresh list
        push_to_hub: PushToHubOpt = None,
        private: PrivateOpt = None,
        overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
    ) -> None:
        """Rounds of sample -> judge -> reward model -> policy step -> win rate (resumable)."""
        from cai.logs import route_library_logs
        from cai.loop import load_loop_config, run_loop
        from cai.paths import check_run_paths

        options = {
            "output_dir": out,
            "rounds": rounds,
            "report_to": list(report_to) or None,
            "push_to_hub": push_to_hub,
            "private": private,
        }
        settings = load_loop_config(config, list(overrides), options)
        check_run_paths(settings)  # before the logs directory is made inside --out
        log_file = route_library_logs(settings.output_dir)
        result = run_loop(settings, say=typer.echo)
        typer.echo(result.summary, nl=False)
        if result.stopped:
            typer.echo(f"stopped early: {result.stopped}")
        typer.echo(f"final policy: {result.final_policy}")
        typer.echo(f"report: {Path(result.output_dir) / 'summary.md'}")
        if log_file is not None:
            typer.echo(f"engine logs: {log_file}")
