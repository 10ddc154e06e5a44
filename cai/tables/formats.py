"""The formats cai writes datasets in, one vocabulary for every command and config:
`save_to_disk` (a directory), `parquet` and `jsonl`; and which format a path's name asks for.

`disk` is accepted everywhere as another spelling of `save_to_disk`, so a config means the
same whichever spelling it uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from cai.errors import InputError
from cai.tables.rows import InputFormatError

FORMATS: tuple[str, ...] = ("save_to_disk", "parquet", "jsonl")
"""The formats cai writes datasets in."""

FORMAT_ALIASES: dict[str, str] = {"disk": "save_to_disk"}
"""Other spellings accepted in configs and calls: `disk` is `save_to_disk`."""


def _alias(value: Any) -> Any:
    return FORMAT_ALIASES.get(value, value) if isinstance(value, str) else value


DatasetFormat = Annotated[Literal["save_to_disk", "parquet", "jsonl"], BeforeValidator(_alias)]
"""A config field naming a dataset format (`disk` is read as `save_to_disk`)."""


def normalize_format(fmt: str) -> str:
    """The format's name in `FORMATS` (`disk` -> `save_to_disk`); an unknown one is an error."""
    name = _alias(fmt)
    if name not in FORMATS:
        raise InputError(
            f"unknown dataset format {fmt!r}",
            key="format",
            fix=f"Use {', '.join(FORMATS)} (disk also means save_to_disk).",
        )
    return name


def format_for_path(path: str | Path) -> str:
    """The format a path's name asks for: a directory name (no suffix) is `save_to_disk`,
    .parquet is Parquet, .jsonl and .json are JSON Lines, .csv is a CSV sheet."""
    path = Path(path)
    suffix = path.suffix.lower()
    formats = {"": "save_to_disk", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix == ".csv":
        return "csv"
    if suffix not in formats:
        raise InputFormatError(
            f"cannot write {suffix!r} files",
            file=path,
            fix="Use .jsonl, .parquet, .csv or a directory name (save_to_disk).",
        )
    return formats[suffix]


def card_path(destination: str | Path, fmt: str) -> Path:
    """Where the card of a dataset written to `destination` in `fmt` goes: inside a
    directory as README.md, beside a file as `<name>.README.md`."""
    destination = Path(destination)
    if normalize_format(fmt) == "save_to_disk":
        return destination / "README.md"
    return destination.with_name(destination.name + ".README.md")
