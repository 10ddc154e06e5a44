"""`cai cache stats|clear`: inspect or empty the SQLite cache of model calls.

A corrupt cache file is moved aside with a warning and an empty cache takes its place (see
`cai.cache`), so both commands work on a damaged file too.
"""

from __future__ import annotations

from pathlib import Path

import typer

group = typer.Typer(help="The content-addressed cache of model calls.", no_args_is_help=True)

_PATH_HELP = "Cache file (default: $CAI_HOME/calls.sqlite)."


def _existing(path: Path | None) -> Path:
    """The cache file to work on; a CacheError if there is none."""
    from cai.cache import CacheError, default_cache_path

    target = path or default_cache_path()
    if not target.exists():
        raise CacheError(
            "no call cache here",
            file=target,
            fix="Pass the cache file (a stage's cache_path), e.g. `cai cache stats PATH`",
        )
    return target


@group.command("stats")
def stats_command(path: Path | None = typer.Argument(None, help=_PATH_HELP)) -> None:
    """Entries per model and call kind, and the size on disk."""
    from cai.cache import CallCache

    cache = CallCache(_existing(path))
    try:
        summary = cache.summary()
    finally:
        cache.close()
    typer.echo(f"{summary.path}: {summary.entries} entries, {summary.size_bytes / 1e6:.2f} MB")
    for model_id, kinds in sorted(summary.by_model.items()):
        counts = ", ".join(f"{kind}={count}" for kind, count in sorted(kinds.items()))
        typer.echo(f"  {model_id}: {counts}")


@group.command("clear")
def clear_command(
    path: Path | None = typer.Argument(None, help=_PATH_HELP),
    model_id: str | None = typer.Option(None, "--model-id", help="Only this model's entries."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete cached calls (all, or one model's)."""
    from cai.cache import CallCache

    target = _existing(path)
    what = f"entries of {model_id!r}" if model_id else "all entries"
    if not yes and not typer.confirm(f"Delete {what} from {target}?"):
        raise typer.Exit(1)
    cache = CallCache(target)
    try:
        removed = cache.clear(model_id)
    finally:
        cache.close()
    typer.echo(f"Removed {removed} entries from {target}.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="cache")
