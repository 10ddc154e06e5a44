"""Constitution errors that name the file, the line and the field, and say how to fix them.

Loading collects every problem of a file before raising, so a user fixes them all in one
pass instead of one per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from cai.errors import CaiError


class ConstitutionIssue(BaseModel):
    """One problem in one file."""

    file: str
    line: int | None = None
    column: int | None = None
    field: str = ""
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{field} {self.message}{hint}"


class ConstitutionError(CaiError, ValueError):
    """A constitution could not be loaded; `issues` lists every problem found."""

    def __init__(self, issues: Iterable[ConstitutionIssue]):
        self.issues = list(issues)
        count = len(self.issues)
        if count == 1:  # one problem reads best as one line
            super().__init__(str(self.issues[0]))
        else:
            head = f"{count} problems in constitution"
            super().__init__(head + ":\n" + "\n".join(f"  {issue}" for issue in self.issues))
        if self.issues:  # where the first problem is, for callers that read the fields
            self.file, self.line = self.issues[0].file, self.issues[0].line

    def __reduce__(self):
        # Keep the issues when the error crosses a process boundary (multiprocessing).
        return (type(self), (self.issues,))


def field_path(loc: Iterable[object]) -> str:
    """('principles', 2, 'weight') -> 'principles[2].weight'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def display_path(path: Path | str) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
