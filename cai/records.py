"""The typed rows that flow between stages, each one a dataset on disk.

Preference rows are TRL's conversational preference format (prompt / chosen / rejected)
plus provenance and confidence columns, so `trl.RewardTrainer` and `trl.DPOTrainer` read
them with no conversion. We deliberately do not emit a column named `margin`: TRL's
RewardTrainer would silently use it in its loss. Unpaired rows (one answer with a thumbs up
or down) are TRL's unpaired format (prompt / completion / label) that `trl.KTOTrainer` reads.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

Message = dict[str, str]
"""A chat message: {"role": "system" | "user" | "assistant", "content": "..."}."""


def prompt_conversation(prompt: str | list[dict[str, Any]]) -> list[Message]:
    """A prompt as TRL and the reward service pass it (a text, or chat messages) as the chat
    before the response, the way the judge's templates read it."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in prompt]


def completion_text(item: Any) -> str:
    """A completion as TRL passes it: a string, or messages (the last one's content)."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and isinstance(item[-1], dict):
        return str(item[-1].get("content", ""))
    if isinstance(item, dict):
        return str(item.get("content", ""))
    raise TypeError(f"cannot read a completion of type {type(item).__name__}")


Source = Literal["ai", "human"]

PROB_COLUMN = "prob_chosen"
"""P(chosen beats rejected) in a preference row: the reward model's soft target."""
WEIGHT_COLUMN = "sample_weight"
"""A reward-training row's weight (from its `source`), added when the rows are prepared."""
ROW_COLUMN = "cai_row"
"""A reward-training row's number, added only with CAI_DEBUG_DATA_LOG set, for the data log."""


def stable_id(*parts: object) -> str:
    """A short content hash, stable across runs and machines (used for prompt and pair ids)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pair_key(prompt: list[Message], response_a: str, response_b: str) -> str:
    """Order-insensitive id of a preference pair: the same for AI labels, human labels and mixes."""
    return stable_id(prompt, sorted([response_a, response_b]))


class PromptRecord(BaseModel):
    """One input prompt: the conversation up to (and including) the last user turn."""

    prompt_id: str
    prompt: list[Message]


class Sample(BaseModel):
    """n policy responses to one prompt."""

    prompt_id: str
    prompt: list[Message]
    responses: list[str]
    finish_reasons: list[str]
    policy_model: str
    seed: int | None = None


class PreferenceRow(BaseModel):
    """One preference pair: TRL columns first, then how it was made and how sure we are."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    prompt_id: str
    pair_id: str
    prob_chosen: float = Field(ge=0.0, le=1.0)
    """Debiased probability that `chosen` beats `rejected` (>= 0.5 for AI rows)."""
    n_judgments: int = 0
    orders_agree: bool | None = None
    principles: list[str] = Field(default_factory=list)
    judge_model: str | None = None
    constitution_name: str | None = None
    constitution_hash: str | None = None
    source: Source = "ai"
    method: str = "pairwise"
    """pairwise | best_vs_worst | all_pairs | revision | human-import."""
    prob_chosen_by_order: list[float] | None = None
    """P(chosen wins) read from each answer order ([chosen shown first, chosen shown second])."""
    prob_chosen_by_principle: list[float | None] | None = None
    """P(chosen wins) under each entry of `principles` (None where that principle failed)."""
    score_margin: float | None = None
    """Bradley-Terry score difference for k-wise rankings (not TRL's `margin`)."""
    rater_id: str | None = None
    decided_by_tier: int | None = None
    """Under tiered aggregation, the tier whose verdict labelled the pair (pairwise rows)."""
    judge_members: list[str] | None = None
    """Under a judge panel, its members, in the order of `prob_chosen_by_member`."""
    prob_chosen_by_member: list[float | None] | None = None
    """Each panel member's P(chosen wins) (None where that member abstained)."""


class UnpairedRow(BaseModel):
    """One answer with a thumbs up (`label: true`, desirable) or down: TRL's unpaired
    preference format (prompt / completion / label), which `trl.KTOTrainer` reads as is."""

    prompt: list[Message] | str
    completion: list[Message] | str
    label: bool
    prompt_id: str
    completion_id: str
    """`stable_id(prompt, completion text)`: the same answer rated twice shares it."""
    source: Source = "ai"
    method: str = "unpaired"
    """human-import (a thumbs up/down) | unpaired (one side of a preference pair)."""
    pair_id: str | None = None
    """The preference pair this answer came from, when it came from one."""
    pair_confidence: float | None = Field(None, ge=0.5, le=1.0)
    """That pair's probability that its chosen answer is better (provenance only)."""
    rater_id: str | None = None


class RevisionRound(BaseModel):
    principle_id: str
    critique: str
    revision: str


class SftExample(BaseModel):
    """SL-CAI output: prompt + final revision as `messages`, with the whole chain kept."""

    messages: list[Message]
    prompt_id: str
    initial_response: str
    rounds: list[RevisionRound]
    principles: list[str]
    flags: list[str] = Field(default_factory=list)
