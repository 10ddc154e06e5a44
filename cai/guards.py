"""Quality guards for SL-CAI revision chains: flag bad revisions, route them, count everything.

A small model's revision is often empty, a copy of the answer it was asked to revise, cut
off at max tokens, or a paraphrase of its own critique ("The response is harmful because
...") instead of a rewritten answer. Such rows poison SFT data, so every chain is checked
round by round, its flags are kept as columns, and a policy decides whether flagged rows
are kept, dropped or sent to a separate split. Every decision is counted in a report:
nothing disappears silently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EMPTY = "empty_revision"
UNCHANGED = "unchanged_revision"
TRUNCATED = "truncated_revision"
LEAK = "critique_leak"
FAILED = "generation_failed"
ALL_CHECKS: tuple[str, ...] = (EMPTY, UNCHANGED, TRUNCATED, LEAK)
"""Checks a user can switch on or off. FAILED (a chain that could not finish) is always on."""

GuardPolicy = Literal["keep", "drop", "split"]

DEFAULT_LEAK_MARKERS: tuple[str, ...] = (
    "critique:",
    "critique request",
    "revision request",
    "revision:",
    "the assistant's response",
    "the assistant's last response",
    "the response is harmful",
    "the response could be improved",
)


class GuardConfig(BaseModel):
    """Which checks run, how leaks are detected, and what happens to flagged rows."""

    model_config = ConfigDict(extra="forbid")

    policy: GuardPolicy = "split"
    """keep: flagged rows stay in the dataset (flags are columns); drop: they are left out and
    counted; split: they go to a separate `flagged` split."""
    checks: list[str] = Field(default_factory=lambda: list(ALL_CHECKS))
    leak_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_LEAK_MARKERS))
    """Case-insensitive phrases of critique language that do not belong in a rewritten answer."""
    leak_min_words: int = Field(8, ge=3)
    """A run of this many consecutive critique words copied into the revision (and not already
    in the answer being revised) counts as a leak."""

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, checks: list[str]) -> list[str]:
        # A field validator, so the error points at `checks` in the user's config.
        unknown = sorted(set(checks) - set(ALL_CHECKS))
        if unknown:
            raise ValueError(f"unknown guard check(s) {unknown}; choose from {list(ALL_CHECKS)}.")
        return checks


class RoundText(BaseModel):
    """The texts of one round that the guards look at."""

    answer_before: str
    critique: str
    revision: str
    revision_finish_reason: str = "stop"


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def leaked_phrase(round_: RoundText, config: GuardConfig) -> str | None:
    """The evidence that the critique leaked into the revision, or None."""
    revision = round_.revision.casefold()
    before = round_.answer_before.casefold()
    for marker in config.leak_markers:
        needle = marker.casefold()
        if needle and needle in revision and needle not in before:
            return f"marker {marker!r}"
    n = config.leak_min_words
    copied = _ngrams(_words(round_.critique), n) & _ngrams(_words(round_.revision), n)
    copied -= _ngrams(_words(round_.answer_before), n)
    if copied:
        return "copied critique words: " + " ".join(sorted(copied)[0])
    return None


def check_round(round_: RoundText, config: GuardConfig) -> list[str]:
    """Flags raised by one round (in ALL_CHECKS order)."""
    flags = []
    enabled = set(config.checks)
    if EMPTY in enabled and not round_.revision.strip():
        flags.append(EMPTY)
    if (
        UNCHANGED in enabled
        and round_.revision.strip()
        and _normalise(round_.revision) == _normalise(round_.answer_before)
    ):
        flags.append(UNCHANGED)
    if TRUNCATED in enabled and round_.revision_finish_reason == "length":
        flags.append(TRUNCATED)
    if LEAK in enabled and round_.revision.strip() and leaked_phrase(round_, config):
        flags.append(LEAK)
    return flags


def check_chain(
    rounds: Sequence[RoundText], config: GuardConfig, failed: bool = False
) -> tuple[list[str], list[list[str]]]:
    """(flags of the whole chain, flags per round). A chain is flagged if any round is."""
    per_round = [check_round(r, config) for r in rounds]
    union = {flag for flags in per_round for flag in flags}
    if failed:
        union.add(FAILED)
    order = [*ALL_CHECKS, FAILED]
    return [flag for flag in order if flag in union], per_round


class GuardReport(BaseModel):
    """What the guards saw and what the policy did with it."""

    policy: GuardPolicy
    rows: int = 0
    flagged: int = 0
    kept: int = 0
    dropped: int = 0
    split: int = 0
    by_flag: dict[str, int] = Field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"guards ({self.policy}): {self.rows} rows, {self.flagged} flagged, "
            f"{self.kept} kept, {self.split} in the flagged split, {self.dropped} dropped"
        ]
        out += [f"  {flag}: {count}" for flag, count in sorted(self.by_flag.items())]
        return out


def route(
    rows: Iterable[dict], policy: GuardPolicy, flags_key: str = "flags"
) -> tuple[list[dict], list[dict], GuardReport]:
    """Split rows into (dataset rows, flagged-split rows) by policy, counting every decision."""
    report = GuardReport(policy=policy)
    counts: Counter[str] = Counter()
    kept: list[dict] = []
    flagged_split: list[dict] = []
    for row in rows:
        report.rows += 1
        flags = row.get(flags_key) or []
        counts.update(flags)
        if not flags:
            kept.append(row)
            report.kept += 1
            continue
        report.flagged += 1
        if policy == "keep":
            kept.append(row)
            report.kept += 1
        elif policy == "split":
            flagged_split.append(row)
            report.split += 1
        else:
            report.dropped += 1
    report.by_flag = dict(counts)
    return kept, flagged_split, report
