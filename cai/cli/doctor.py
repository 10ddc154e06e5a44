"""`cai doctor`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        engine: bool = typer.Option(True, help="Start a real vLLM engine on a tiny model."),
        engine_timeout: int = typer.Option(300, help="Seconds to wait for the engine probe."),
    ) -> None:
        """Report Python, torch, vLLM, GPUs, TRL and transformers, and whether vLLM runs here."""
        from cai.doctor import run_checks

        checks = run_checks(engine=engine, engine_timeout_s=engine_timeout)
        for check in checks:
            mark = "ok " if check.ok else "FAIL"
            typer.echo(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.advice:
                typer.echo(f"       -> {check.advice}")
        failed = [c for c in checks if not c.ok]
        typer.echo("all good" if not failed else f"{len(failed)} problem(s) found")
        raise typer.Exit(1 if failed else 0)
