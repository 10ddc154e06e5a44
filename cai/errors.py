"""`CaiError`: the base of every error cai raises on purpose.

A deliberate error is about the user's input or environment, not a bug: it says *where*
(file, row or line, key), *what* was wrong and *how to fix it*, and the CLI prints it as one
line (exit code 2) instead of a traceback. Anything else that escapes a command is a bug and
keeps its traceback (see `cai.cli.errors`).

Existing error classes keep their names and their builtin bases (`ValueError`,
`RuntimeError`, ...) so callers that catch those still work; they add `CaiError` as a base.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class CaiError(Exception):
    """A deliberate, user-facing error.

    `message` says what is wrong; `file`, `row`, `line` and `key` say where (any may be None);
    `fix` says what to do about it. `str(err)` joins them into one readable line.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.line = line
        self.column = column
        self.key = key
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            if self.row is not None:
                where += f" row {self.row}"
        parts = [p for p in (where, self.key) if p]
        text = ": ".join([*parts, self.message])
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return text

    def __reduce__(self):
        # Survive pickling across process boundaries (multiprocessing, Ray) with its fields.
        fields = (self.file, self.row, self.line, self.column, self.key, self.fix)
        return (_rebuild, (type(self), self.message, *fields))


def _rebuild(cls, message, file, row, line, column, key, fix):
    err = cls.__new__(cls)
    CaiError.__init__(
        err, message, file=file, row=row, line=line, column=column, key=key, fix=fix
    )
    return err


class InputError(CaiError, ValueError):
    """An input file or setting cannot be used as given."""


class OutputDirError(CaiError, RuntimeError):
    """The output directory cannot be written safely (in use, holds foreign files, ...)."""


class BackendError(CaiError, RuntimeError):
    """A model call failed in a way the caller cannot fix by retrying (bad model, bad request).

    It lives here, below the backends, because naming a model (`cai.model_names`) fails with
    it too, before any backend exists.
    """


def one_line(err: BaseException) -> str:
    """An error's message on one line (multi-line messages keep their lines indented)."""
    text = str(err).strip() or type(err).__name__
    return text


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """'did you mean `x`?' for the option closest to a misspelt `word`, or '' when none is close:
    the fix of an error about an unknown name."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else ""
