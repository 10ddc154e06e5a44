"""Reading judge text output. Nothing here raises: every outcome keeps the raw text.

The label itself always comes from answer-token probabilities, never from parsing a sampled
letter. Parsing only decides whether a chain-of-thought rationale is usable, and records
why not (empty, cut off, or already naming an answer that we could cross-check).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

FailureKind = Literal[
    "empty_response",
    "empty_rationale",
    "truncated_rationale",
    "unparseable",
    "context_overflow",
    "backend_error",
]


class JudgeFailure(BaseModel):
    """One judgment that produced no label, with the text it was given or produced."""

    kind: FailureKind
    raw_output: str = ""
    detail: str = ""
    principle: str | None = None
    order: str | None = None


class RationaleCheck(BaseModel):
    ok: bool
    rationale: str
    failure: JudgeFailure | None = None
    stated_label: str | None = None
    """The label the rationale itself names (e.g. "(B)"), if any; for auditing only."""


_MIN_RATIONALE_CHARS = 3


def stated_label(text: str, labels: list[str] | tuple[str, ...]) -> str | None:
    """The last label the text names as an answer, like "(A)" or "Response B"; else None."""
    if not text:
        return None
    alternatives = "|".join(re.escape(label) for label in labels)
    pattern = re.compile(
        rf"(?:\(\s*({alternatives})\s*\)|\b(?:response|answer|option)\s+({alternatives})\b)",
        re.IGNORECASE,
    )
    found = None
    for match in pattern.finditer(text):
        value = match.group(1) or match.group(2)
        for label in labels:
            if value.lower() == label.lower():
                found = label
    return found


def check_rationale(
    raw: str | None,
    finish_reason: str | None,
    labels: list[str] | tuple[str, ...] = ("A", "B"),
    allow_truncated: bool = False,
) -> RationaleCheck:
    """Decide whether a generated chain-of-thought rationale can be scored."""
    text = raw if isinstance(raw, str) else ""
    cleaned = text.strip()
    problem = None
    if len(cleaned) < _MIN_RATIONALE_CHARS or not re.search(r"\w", cleaned):
        problem = ("empty_rationale", "the judge produced no usable reasoning text")
    elif finish_reason == "error":
        problem = (
            "backend_error",
            "the backend reported an error while generating the rationale",
        )
    elif finish_reason == "length" and not allow_truncated:
        problem = (
            "truncated_rationale",
            "the rationale hit the token limit before finishing; raise cot_max_tokens or pass "
            "allow_truncated_rationale",
        )
    if problem is not None:
        kind, detail = problem
        failure = JudgeFailure(kind=kind, raw_output=text, detail=detail)
        return RationaleCheck(ok=False, rationale=text, failure=failure)
    return RationaleCheck(ok=True, rationale=text, stated_label=stated_label(text, labels))
