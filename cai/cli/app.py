"""Root Typer app. Command groups register here; heavy imports stay inside commands."""

from __future__ import annotations

import importlib

import typer

from cai import __version__
from cai.cli.errors import guard_all
from cai.debug import set_debug

app = typer.Typer(
    name="cai",
    help="Constitutional AI and RLAIF: constitutions, AI feedback with vLLM, preference data, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module's `register(app)` adds its commands or command group; imports stay light.
_GROUPS: list[tuple[str, str]] = [
    ("cai.cli.doctor", "register"),
    ("cai.cli.constitution", "register"),
    ("cai.cli.models", "register"),
    ("cai.cli.serve", "register"),
    ("cai.cli.reward", "register"),
    ("cai.cli.cache", "register"),
    ("cai.cli.sample", "register"),
    ("cai.cli.judge", "register"),
    ("cai.cli.revise", "register"),
    ("cai.cli.run", "register"),
    ("cai.cli.human", "register"),
    ("cai.cli.label", "register"),
    ("cai.cli.train", "register"),
    ("cai.cli.evaluate", "register"),
    ("cai.cli.loop", "register"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", "-v", help="Show tracebacks of cai's own errors (for bug reports)."
    ),
) -> None:
    """cai: write a constitution, label with an AI judge, train on the labels."""
    set_debug(debug)


for module_name, attr in _GROUPS:
    getattr(importlib.import_module(module_name), attr)(app)
guard_all(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
