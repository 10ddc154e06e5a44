"""Which principles each command can use, checked before any model loads.

A principle may be written for one use: `judge` needs a `comparison_question`, `revise` a
`critique_request` and a `revision_request`, `assess` an `assessment_question` (or, failing
that, a comparison question it can reword). Every command samples only from the principles
that fit its use; when some do not fit it says how many it skipped and which, and when none
do it stops with an error naming the file, instead of rendering an empty prompt.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel

from cai.constitution.errors import display_path
from cai.constitution.models import Constitution, Principle
from cai.errors import CaiError

Use = Literal["judge", "revise", "assess"]
USES: tuple[Use, ...] = ("judge", "revise", "assess")

NEEDS: dict[str, str] = {
    "judge": "a `comparison_question`",
    "revise": "a `critique_request` and a `revision_request`",
    "assess": "an `assessment_question` (or a `comparison_question`)",
}
COMMANDS: dict[str, str] = {
    "judge": "cai judge",
    "revise": "cai revise",
    "assess": "pointwise assessment",
}

log = logging.getLogger("cai.constitution")
_warned: set[tuple[str, str]] = set()


class ConstitutionUseError(CaiError, ValueError):
    """No principle of the constitution carries what a command needs."""


def fits(principle: Principle, use: str) -> bool:
    """Whether `principle` carries the phrasing(s) `use` needs."""
    if use == "judge":
        return principle.comparison_question is not None
    if use == "revise":
        return principle.critique_request is not None and principle.revision_request is not None
    if use == "assess":
        return (
            principle.assessment_question is not None or principle.comparison_question is not None
        )
    raise ValueError(f"unknown use {use!r}; uses are {', '.join(USES)}")


def usable_principles(constitution: Constitution, use: str | None) -> list[Principle]:
    """The principles `use` can sample from (all of them when `use` is None)."""
    if use is None:
        return list(constitution.principles)
    return [p for p in constitution.principles if fits(p, use)]


class UseCheck(BaseModel):
    """What one use can draw on: the usable principle ids and the skipped ones."""

    use: str
    usable: list[str]
    skipped: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.usable)

    def note(self) -> str:
        """One line for the user: how many principles this use skips, and which."""
        if not self.skipped:
            return f"all {len(self.usable)} principles usable for {self.use}"
        return (
            f"{COMMANDS[self.use]} uses {len(self.usable)} of "
            f"{len(self.usable) + len(self.skipped)} principles; skipped "
            f"{len(self.skipped)} without {NEEDS[self.use]}: {', '.join(self.skipped)}"
        )


def check_use(constitution: Constitution, use: str) -> UseCheck:
    """Which principles `use` can and cannot sample from (never raises for a known use)."""
    usable = usable_principles(constitution, use)
    ids = {p.id for p in usable}
    return UseCheck(
        use=use,
        usable=[p.id for p in usable],
        skipped=[p.id for p in constitution.principles if p.id not in ids],
    )


def require_use(constitution: Constitution, use: str, *, warn: bool = True) -> UseCheck:
    """`check_use`, raising `ConstitutionUseError` (naming the file) when nothing fits.

    With `warn`, a use that skips principles logs the note once per constitution and use,
    so a command says how many principles it skipped without repeating it per batch.
    """
    check = check_use(constitution, use)
    if not check.ok:
        raise use_error(constitution, use)
    key = (constitution.content_hash or constitution.compute_hash(), use)
    if warn and check.skipped and key not in _warned:
        _warned.add(key)
        log.warning("%s", check.note())
    return check


def use_error(constitution: Constitution, use: str) -> ConstitutionUseError:
    """The error for a constitution with no principle for `use`, naming what each carries."""

    carried = ", ".join(f"{p.id} ({describe_uses(p)})" for p in constitution.principles)
    source = constitution.source_path
    return ConstitutionUseError(
        f"constitution {constitution.name!r} has no principle {COMMANDS[use]} can use: "
        f"it needs {NEEDS[use]}, and its principles are {carried}",
        file=display_path(source) if source is not None else None,
        fix=f"Add {NEEDS[use]} to some principles, or pick a constitution written for "
        f"{use} (check one with `cai constitution validate FILE --for {use}`).",
    )


def describe_uses(principle: Principle) -> str:
    """'judge, revise' -- the uses a principle serves (for messages and reports)."""
    return ", ".join(use for use in USES if fits(principle, use)) or "none"
