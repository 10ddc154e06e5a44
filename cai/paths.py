"""Outputs never eat inputs: the check every command that reads and writes makes first.

A command that writes where it reads (`cai mix --ai A --out A`, a trainer whose output
directory holds its data, `--out` equal to `--prompts`) would destroy its input before or while
reading it. Every such command calls `refuse_output_onto_input` (or `check_run_paths` for a
settings object) before it reads or writes anything, so the mistake is one line and no byte
moves. Paths are compared as the file system sees them: symlinks, `./x` and `x`, trailing
slashes and hard links name one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cai.errors import OutputDirError

PathLike = str | os.PathLike[str]

#: Settings that name where a run writes (or resumes from), or a label that is no path (a run's
#: `name` may well equal its output directory's), never an input it reads.
_NOT_INPUTS = ("output_dir", "out", "resume", "cache_path", "push_to_hub", "hub_model_id", "name")


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _same(a: PathLike, b: PathLike) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: PathLike, directory: PathLike) -> bool:
    """`path` lies strictly under `directory` (after resolving symlinks)."""
    return _resolved(directory) in _resolved(path).parents


def _fix(flag: str) -> str:
    return f"Choose another {flag} (a new path that is none of the command's inputs)."


def refuse_output_onto_input(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None],
    *,
    replaces: bool = False,
    fix: str | None = None,
) -> None:
    """Raise `OutputDirError` when an output is one of the inputs, lies inside an input
    directory, or (with `replaces`: the command clears or replaces its output) holds an input.

    Keys are the flags or settings that name each path, so the error names both; `fix`
    replaces the default advice (choose another output flag). Inputs that
    do not exist are skipped: a model or constitution *name* is no file, and a missing file is
    the reader's error to report.
    """
    for out_flag, out in outputs.items():
        if out is None or str(out) == "":
            continue
        for in_flag, source in inputs.items():
            if source is None or str(source) == "" or not os.path.lexists(source):
                continue
            if _same(out, source):
                why = f"is the same path as the input {in_flag} {source}"
            elif _inside(out, source) and Path(source).is_dir():
                why = f"lies inside the input {in_flag} directory {source}"
            elif replaces and _inside(source, out):
                why = f"holds the input {in_flag} {source}, and the command replaces what is there"
            else:
                continue
            raise OutputDirError(
                f"{out_flag} {out} {why}; writing it would destroy that input",
                fix=fix or _fix(out_flag),
            )


def require_directory(path: PathLike | None, flag: str = "--out") -> None:
    """Raise `OutputDirError` when `path` (an output directory) or a folder above it is an
    existing regular file: cai would fail half-way creating it, and never overwrites the file."""
    if path is None or str(path) == "":
        return
    candidate = Path(path).expanduser()
    for part in (candidate, *candidate.parents):
        if part.exists():
            if part.is_dir():
                return
            where = "is" if part == candidate else f"lies under {part}, which is"
            raise OutputDirError(
                f"{flag} names a directory to write, but {path} {where} an existing file",
                fix=f"Choose another {flag}: a new directory, or one cai wrote before.",
            )


def _strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """Every (dotted key, string) in a settings value: models, dicts, lists."""
    if isinstance(value, (str, os.PathLike)):
        yield key, os.fspath(value)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _strings(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{key}[{index}]")
    elif hasattr(value, "model_dump"):
        yield from _strings(dict(value), key)


def settings_inputs(settings: Any, skip: Iterable[str] = ()) -> dict[str, str]:
    """The local paths a settings object reads: every string setting that names an existing
    file or directory, keyed by its dotted name (settings that name outputs are left out)."""
    skipped = set(skip)
    found = {}
    for key, text in _strings(settings, ""):
        leaf = key.rsplit(".", 1)[-1].split("[", 1)[0]
        if key in skipped or leaf in _NOT_INPUTS or not text or "\n" in text or len(text) > 4096:
            continue
        if os.path.lexists(text):
            found[key] = text
    return found


def check_run_paths(
    settings: Any, out_key: str = "output_dir", *, flag: str = "--out", replaces: bool = False
) -> None:
    """The output-onto-input check of a command that writes the directory `settings.<out_key>`
    and reads the paths its other settings name (pipelines, trainers, eval, loop)."""
    out = getattr(settings, out_key, None)
    if out is None:
        return
    inputs = settings_inputs(settings, skip=(out_key,))
    refuse_output_onto_input({flag: out}, inputs, replaces=replaces)
    require_directory(out, flag)
