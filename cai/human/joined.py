"""AI and human labels of the same pairs, side by side (joined by `pair_key`, whatever order
each source stored the responses in), and why nothing joined when nothing does.

Orientation: a pair's responses are ordered alphabetically ("first" / "second"), which is
independent of both sources; several human raters of one pair are averaged (a tie is 0.5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cai.errors import InputError
from cai.human.metrics import Label, label_of
from cai.human.pairs import (
    check_preference_rows,
    prob_first,
    prompt_messages,
    response_text,
    row_key,
)
from cai.records import stable_id
from cai.tables import counted


class NoSharedPairsError(InputError):
    """The AI and human datasets have no pair in common, so there is nothing to compare."""


@dataclass(frozen=True)
class JoinedPair:
    """One pair with both labels. `chosen_is_first`: the AI's chosen response sorts first."""

    ai: dict[str, Any]
    human_first: float
    """Mean human probability that the first response wins."""
    chosen_is_first: bool

    @property
    def ai_label(self) -> Label:
        return label_of(prob_first(self.ai))

    @property
    def human_label(self) -> Label:
        return label_of(self.human_first)

    @property
    def human_on_chosen(self) -> float:
        """Mean human probability that the AI's chosen response wins."""
        return self.human_first if self.chosen_is_first else 1.0 - self.human_first

    def to_first(self, p_chosen: float) -> float:
        """A probability that the AI's chosen wins, turned to read "the first wins"."""
        return p_chosen if self.chosen_is_first else 1.0 - p_chosen


@dataclass
class Joined:
    """The joined pairs, the AI rows compared (human rows in them dropped), every human
    rating by pair, and notes on what was ignored."""

    pairs: list[JoinedPair]
    ai_rows: list[dict[str, Any]]
    human_by_key: dict[str, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)


def join_labels(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    names: tuple[str, str] = ("AI dataset", "human dataset"),
) -> Joined:
    """Pairs labelled on both sides; raises `NoSharedPairsError` (saying why) when none."""
    check_preference_rows(ai_rows, names[0])
    check_preference_rows(human_rows, names[1])
    notes: list[str] = []
    human_in_ai = [row for row in ai_rows if row.get("source") == "human"]
    if human_in_ai:
        ai_rows = [row for row in ai_rows if row.get("source") != "human"]
        notes.append(f"{len(human_in_ai)} rows with source=human in the AI dataset ignored")
    ai_by_key: dict[str, dict[str, Any]] = {}
    for row in ai_rows:
        ai_by_key.setdefault(row_key(row), row)
    if len(ai_by_key) < len(ai_rows):
        notes.append(f"{len(ai_rows) - len(ai_by_key)} duplicate AI rows ignored (first kept)")
    human_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in human_rows:
        human_by_key[row_key(row)].append(row)
    joined = [k for k in ai_by_key if k in human_by_key]
    if not joined:
        raise _no_shared_pairs(ai_rows, human_rows, names, notes)
    pairs = [
        JoinedPair(
            ai=ai_by_key[key],
            human_first=sum(prob_first(r) for r in human_by_key[key]) / len(human_by_key[key]),
            chosen_is_first=_chosen_is_first(ai_by_key[key]),
        )
        for key in joined
    ]
    return Joined(pairs=pairs, ai_rows=ai_rows, human_by_key=dict(human_by_key), notes=notes)


def _chosen_is_first(row: dict[str, Any]) -> bool:
    return response_text(row["chosen"]) <= response_text(row["rejected"])


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _loose_key(row: dict[str, Any]) -> str:
    """A pair key that ignores whitespace and line endings (to explain a failed match)."""
    prompt = [
        {"role": m["role"], "content": _squeeze(m["content"])}
        for m in prompt_messages(row["prompt"])
    ]
    texts = sorted(_squeeze(response_text(row[c])) for c in ("chosen", "rejected"))
    return stable_id(prompt, texts)


def _prompt_key(row: dict[str, Any]) -> str:
    return stable_id(prompt_messages(row["prompt"]))


def _no_shared_pairs(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    names: tuple[str, str],
    notes: Sequence[str] = (),
) -> NoSharedPairsError:
    """Why no pair matched: how many pairs and prompts each side has, how many prompts both
    share, and whether ignoring whitespace would have matched some."""
    ai_pairs = {row_key(r) for r in ai_rows}
    human_pairs = {row_key(r) for r in human_rows}
    ai_prompts = {_prompt_key(r) for r in ai_rows}
    shared_prompts = ai_prompts & {_prompt_key(r) for r in human_rows}
    loose = {_loose_key(r) for r in ai_rows} & {_loose_key(r) for r in human_rows}
    parts = [
        f"no pair is in both datasets: the {names[0]} has {counted(len(ai_pairs), 'pair')}, "
        f"the {names[1]} {counted(len(human_pairs), 'pair')}",
        f"{counted(len(shared_prompts), 'prompt')} in both, but never with the same two responses"
        if shared_prompts
        else "no prompt appears in both",
    ]
    if loose:
        parts.append(
            f"{counted(len(loose), 'pair')} would match if whitespace and line endings were ignored"
        )
    parts.extend(notes)
    return NoSharedPairsError(
        "; ".join(parts),
        fix="A pair id is computed from the prompt and both responses, so the texts must be "
        "identical: check whitespace and line endings, the prompt format (a plain string is one "
        "user turn), and that people labelled the samples of this AI dataset.",
    )
