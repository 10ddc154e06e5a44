"""The reward service's wire format: typed requests and answers of every endpoint.

A request body is checked in two steps. Its frame (the list of items, their count) is checked
whole: a bad frame is a 4xx. Each item is then checked on its own, so one malformed item gets
its own error in the answer and never takes down the other items, or the batch it rides in.

OpenRLHF's remote reward protocol is matched exactly (`OpenRLHFRequest` / `openrlhf_answer`):
see docs/reward-service.md for the source it was read from.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ROLES = ("system", "user", "assistant")
"""The roles the judge's templates render (`cai.templates.ROLES`)."""

Mode = Literal["score", "compare", "rank"]
"""The three ways the judge rewards: pointwise, pairwise, and k-wise per prompt group."""


class ItemError(BaseModel):
    """Why one item has no reward: a short kind and one line saying what was wrong."""

    kind: str
    message: str


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | list[dict[str, str]]
    """The user's text, or the chat before the response (role/content messages)."""
    key: str | None = None
    """The item's identity for the seeded principle choice (e.g. a prompt id); default: the
    prompt's content, so the same prompt always meets the same principles."""

    @field_validator("prompt")
    @classmethod
    def _messages(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("prompt is an empty list of messages")
            for message in value:
                if set(message) - {"role", "content"} or "content" not in message:
                    raise ValueError("each prompt message needs role and content, nothing else")
                if message.get("role", "user") not in ROLES:
                    raise ValueError(f"a message's role must be one of {', '.join(ROLES)}")
        return value


class ScoreItem(_Item):
    """/v1/score: one response to one prompt, judged on its own."""

    response: str


class CompareItem(_Item):
    """/v1/compare: two responses to one prompt; the answer is P(chosen is better)."""

    chosen: str
    rejected: str


class RankGroup(_Item):
    """/v1/rank: k responses to one prompt, ranked by one k-wise judgment."""

    responses: list[str] = Field(min_length=1)


ITEM_MODELS: dict[str, type[_Item]] = {
    "score": ScoreItem,
    "compare": CompareItem,
    "rank": RankGroup,
}


class PrincipleScore(BaseModel):
    principle: str
    p_follows: float


class ScoreResult(BaseModel):
    reward: float | None = None
    """The combined P(follows) over the item's principles (mean, or tiered as the
    constitution says); None with `error`."""
    principles: list[PrincipleScore] = Field(default_factory=list)
    error: ItemError | None = None


class CompareResult(BaseModel):
    prob_chosen: float | None = None
    """P(chosen is better), averaged over both orders and the principles (what `cai judge`
    writes as prob_a with a = chosen)."""
    per_order: dict[str, float] = Field(default_factory=dict)
    orders_agree: bool | None = None
    principles: list[str] = Field(default_factory=list)
    error: ItemError | None = None


class RankResult(BaseModel):
    rewards: list[float | None] = Field(default_factory=list)
    """Bradley-Terry log-strengths centred on the group (mean zero), one per response;
    None for a response that could not be ranked (see `error`)."""
    error: ItemError | None = None


Result = ScoreResult | CompareResult | RankResult


class Frame(BaseModel):
    """A request's frame: its items as raw JSON, each checked later on its own."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(min_length=1)


class RankFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[Any] = Field(min_length=1)


def parse_item(mode: str, raw: Any) -> _Item | ItemError:
    """One item of a request, or the error that says in one line what is wrong with it."""
    try:
        return ITEM_MODELS[mode].model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "item"
        return ItemError(kind="invalid_item", message=f"{where}: {first.get('msg', 'invalid')}")


def empty_result(mode: str, error: ItemError, size: int = 0) -> Result:
    """The answer for an item that could not be judged: no number, only the error."""
    if mode == "score":
        return ScoreResult(error=error)
    if mode == "compare":
        return CompareResult(error=error)
    return RankResult(rewards=[None] * size, error=error)


def prompt_identity(prompt: Any) -> str:
    """A prompt's content as one string, to group a batch's completions by prompt."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


# ---- OpenRLHF ---------------------------------------------------------------------------------
class OpenRLHFRequest(BaseModel):
    """OpenRLHF's POST /get_reward body: `query` is prompt + response as one decoded text,
    `prompts` the prompt text it starts with, `labels` the dataset's label per sample."""

    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


# Special tokens a decoded query ends with (EOS, end of turn, padding), never the response.
_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[^|<>\s]{1,40}\|>|</s>|<eos>|<pad>))+\s*$")


def split_query(query: str, prompt: str | None) -> tuple[str, str] | ItemError:
    """(prompt, response) of one OpenRLHF query: the response is what follows the prompt,
    without the special tokens the decoded text ends with."""
    if prompt is None:
        return ItemError(
            kind="invalid_item",
            message="the request has no `prompts`: the judge needs the prompt apart from the "
            "response (OpenRLHF sends both since its remote reward executor does)",
        )
    if not query.startswith(prompt):
        return ItemError(
            kind="invalid_item",
            message="the query does not start with its prompt, so the response cannot be "
            "told apart from it",
        )
    return prompt, _TRAILING_SPECIAL.sub("", query[len(prompt) :]).strip()


# The chat markup of the two template families most policies use: ChatML (Qwen, SmolLM, ...)
# and Llama 3's headers. OpenRLHF sends the prompt as the policy's template rendered it.
_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.S)
_LLAMA3 = re.compile(
    r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S
)


def prompt_messages(text: str) -> str | list[dict[str, str]]:
    """The chat a rendered prompt holds (ChatML or Llama 3 markup), without the empty
    assistant turn the generation prompt opens; the text as it is when it holds neither."""
    for pattern in (_CHATML, _LLAMA3):
        turns = [{"role": r, "content": c.strip()} for r, c in pattern.findall(text)]
        if turns and not turns[-1]["content"] and turns[-1]["role"] == "assistant":
            turns.pop()
        if turns and all(t["role"] in ROLES for t in turns):
            return turns
    return text


def openrlhf_answer(rewards: list[float | None], errors: list[ItemError | None]) -> dict:
    """OpenRLHF's answer: `rewards` (advantages), `scores` (dynamic filtering) and
    `extra_logs` (logged per sample); `errors` is cai's, which OpenRLHF ignores."""
    answer: dict[str, Any] = {
        "rewards": rewards,
        "scores": rewards,
        "extra_logs": {"cai_judge_reward": rewards},
    }
    if any(e is not None for e in errors):
        answer["errors"] = [e.model_dump() if e is not None else None for e in errors]
    return answer
