"""A command built from a table of flags, each a typed shortcut for one settings key.

The trainers and `cai eval winrate` differ only in which settings their flags set, so each
declares a tuple of `Flag`s and a function that runs the loaded settings; `settings_command`
turns that into a typer command with `--config`, the flags, `--out` and `--set` (the way TRL's
HfArgumentParser builds flags from dataclass fields, but from a table, so `cai --help` imports
no settings class).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

from cai.cli.options import ConfigOpt, Flag, OutOpt, OutputDirAlias, SetOpt

Runner = Callable[[Path | None, dict[str, Any], list[str]], None]
"""Runs a command: (the --config file, the typed flags as dotted keys, the --set overrides)."""


def _parameter(name: str, option: Any, default: Any = None) -> inspect.Parameter:
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind, default=default, annotation=option)


def settings_command(flags: tuple[Flag, ...], run: Runner, doc: str) -> Callable[..., None]:
    """A typer callback: --config, `flags`, --out (or the hidden --output-dir) and --set."""
    names = [flag.name for flag in flags]
    if len(set(names)) != len(names) or {"config", "out", "output_dir", "overrides"} & set(names):
        raise ValueError(f"flag names must be unique and not reserved: {names}")

    def command(**values: Any) -> None:
        options: dict[str, Any] = {}
        for flag in flags:
            options.update(flag.options(values[flag.name]))
        output_dir = values["out"] if values["out"] is not None else values["output_dir"]
        if output_dir is not None:
            options["output_dir"] = output_dir
        run(values["config"], options, list(values["overrides"]))

    parameters = [
        _parameter("config", ConfigOpt),
        *(_parameter(flag.name, flag.option, _default(flag)) for flag in flags),
        _parameter("out", OutOpt),
        _parameter("output_dir", OutputDirAlias),
        _parameter("overrides", SetOpt, []),
    ]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def _default(flag: Flag) -> Any:
    """Repeatable flags default to an empty list (click passes a fresh one), others to None."""
    return [] if get_origin(get_args(flag.option)[0]) is list else None
