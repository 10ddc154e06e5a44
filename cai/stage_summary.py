"""The shape every stage's result shares, so one report can read any stage."""

from __future__ import annotations

import os
from collections.abc import Callable

from pydantic import BaseModel

Shown = Callable[[str | None], str]


def shown_from(base: str | os.PathLike | None) -> Shown:
    """A `shown` function: a path relative to `base` as the user can open it."""

    def shown(path: str | None) -> str:
        if not path:
            return "n/a"
        return os.path.normpath(os.path.join(base, path)) if base else path

    return shown


class StageSummary(BaseModel):
    """A stage's typed result: counts of work done now and resumed, and its report lines."""

    def lines(self, shown: Shown = shown_from(None)) -> list[str]:
        raise NotImplementedError

    def requests_made(self) -> str | None:
        """'N <kind> requests' sent to a model by this run, for the report's last line."""
        return None
