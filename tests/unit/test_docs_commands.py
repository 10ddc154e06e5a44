"""Every `cai ...` command line shown in the README and docs/ parses against the real CLI.

Lines in fenced code blocks are parsed in full (options, arguments, sub-commands); inline
`cai x y` mentions in prose must at least name an existing command. Nothing is run: click
builds each command's context, which rejects unknown commands and options.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from cai.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_lines() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        in_code = False
        pending = ""
        for number, raw in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if raw.strip().startswith("```"):
                in_code = not in_code
                continue
            if not in_code:
                continue
            line = pending + raw.split(" #")[0].strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            line = re.sub(r"^(\.venv/bin/)?", "", line)
            if line.startswith("cai "):
                found.append((f"{doc.name}:{number}", line))
    return found


def _prose_mentions() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"`(cai(?: [a-z][a-z-]*)+)", line):
                found.append((f"{doc.name}:{number}", match.group(1)))
    return found


def _parse(args: list[str]) -> None:
    """Walk groups down to the leaf command and build its context (no callback runs)."""
    command: click.Command = typer.main.get_command(app)
    name = "cai"
    while True:
        ctx = command.make_context(name, list(args), resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        rest = ctx.protected_args + ctx.args
        if not rest:
            return
        name, command, args = command.resolve_command(ctx, rest)
        assert command is not None, f"unknown command {name!r}"


CODE = _code_lines()


def test_the_docs_show_commands():
    assert len(CODE) > 30


@pytest.mark.parametrize("where,line", CODE, ids=[w for w, _ in CODE])
def test_documented_command_line_parses(where: str, line: str):
    args = shlex.split(line)[1:]
    args = [a for a in args if a not in ("...",)]
    try:
        _parse(args)
    except click.exceptions.Exit:
        pass  # e.g. --version / --help
    except click.UsageError as err:
        pytest.fail(f"{where}: `{line}` does not parse: {err.format_message()}")


def test_every_command_named_in_prose_exists():
    group = typer.main.get_command(app)
    bad = []
    for where, mention in _prose_mentions():
        words = mention.split()[1:]
        command = group.commands.get(words[0])
        if command is None:
            bad.append(f"{where}: `{mention}`")
        elif (
            isinstance(command, click.Group)
            and len(words) > 1
            and not all(w in command.commands for w in words[1].split("/"))
        ):  # a group's next word must be one of its commands (or a slash list of them)
            bad.append(f"{where}: `{mention}`")
    assert not bad, "documented commands that do not exist:\n" + "\n".join(bad)
