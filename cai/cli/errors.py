"""One error policy for every CLI command.

A `CaiError` (deliberate: bad input, a busy directory, an unreachable server) prints as one
line on stderr and exits with code 2. With `cai --debug` (or `CAI_DEBUG=1`) its traceback is
printed too, for bug reports. Any other exception is a bug: it keeps its traceback and gets a
line saying how to report it. Ctrl-C exits with 130 and says how to resume.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer

from cai.debug import debug_enabled
from cai.errors import CaiError


def _print_one_line(err: BaseException) -> None:
    lines = str(err).strip().splitlines() or [type(err).__name__]
    typer.echo(f"error: {lines[0]}", err=True)
    for line in lines[1:]:
        typer.echo(f"  {line.strip()}", err=True)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap one command callback with the error policy above (signature kept for typer)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CaiError as err:
            if debug_enabled():
                traceback.print_exc()
            _print_one_line(err)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo(
                "interrupted: finished chunks are kept; rerun the same command to resume.",
                err=True,
            )
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # the reader went away (`cai ... | head`): not an error of cai's
            _silence_stdout()
            raise typer.Exit(0) from None
        except Exception as err:  # a bug: keep the traceback
            if _is_click_exception(err):
                raise
            traceback.print_exc()
            typer.echo(
                f"cai hit an unexpected error ({type(err).__name__}); this is a bug in cai. Please "
                "report it on the cai issue tracker with the command you ran, the output of "
                "`cai --version` and the traceback above.",
                err=True,
            )
            sys.stderr.flush()
            raise typer.Exit(1) from None

    return wrapper


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _is_click_exception(err: BaseException) -> bool:
    """Usage errors raised inside a command (typer vendors its own click: check both)."""
    import click

    bases = (click.exceptions.ClickException, *typer.BadParameter.__mro__[1:3])
    return isinstance(err, bases)


def guard_all(app: typer.Typer) -> None:
    """Apply `guarded` to every command registered on `app` and its sub-apps (once each)."""
    for info in app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "_cai_guarded", False):
            info.callback = guarded(info.callback)
            info.callback._cai_guarded = True  # type: ignore[attr-defined]
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_all(group.typer_instance)
