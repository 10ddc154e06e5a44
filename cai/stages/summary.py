"""The shape every stage's result shares, so one report can read any stage.

Each stage returns one of these; `summary.json` holds their JSON, and the run's report turns
them back into text through `lines()`, so a key is spelled in one place. Paths are relative
to the run directory; `shown(path)` makes one openable from where the user ran cai.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pydantic import BaseModel

from cai.executors.base import ExecutorReport
from cai.ledger import TokenCount

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


class JobSummary(StageSummary):
    """The result of a stage that runs a chunked job: where it ran, whether the budget stopped
    it, and its tokens."""

    seconds: float
    executor: ExecutorReport | None = None
    """Where the chunks ran: kind, actors, items and seconds per actor, restarts."""
    stopped: bool = False
    """The token budget stopped the stage at a chunk boundary."""
    tokens: TokenCount | None = None
    """The stage's tokens over its whole job (earlier, resumed runs included)."""

    def executor_lines(self) -> list[str]:
        return self.executor.lines() if self.executor else []
