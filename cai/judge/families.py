"""Model families from model identities, to flag a judge grading its own family's text.

Self-preference bias: a judge tends to rate text from its own family higher. The identities
compared are the ones cai records (`judge_model` on every AI row, `policy_model` on every
sample and judged record); a family is the name's stem, without size, version or suffix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

_SIZE = re.compile(r"^\d+(\.\d+)?[kmbt]$|^\d+x\d+(\.\d+)?[bm]$")
_VERSION = re.compile(r"^v?\d+(\.\d+)*$")
_SUFFIXES = {"instruct", "chat", "base", "it", "hf", "sft", "dpo", "rlhf", "awq", "gptq", "gguf"}
_VENDORS = {"meta"}


def model_family(identity: str) -> str:
    """The family stem of a model identity: `smollm2-135m-instruct#ab12` and
    `HuggingFaceTB/SmolLM2-360M@main` are both `smollm`.

    The name (after any `org/`, before `#hash` or `@revision`) is lowercased and cut at its
    first size token (`135m`, `7b`, `8x7b`); suffixes like `instruct` and pure version tokens
    are dropped, and so are a vendor prefix (`meta-llama` -> `llama`) and version digits at the
    end of a word (`qwen2.5` -> `qwen`), since versions of a family share data and style.
    """
    name = identity.split("#", 1)[0].split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
    kept: list[str] = []
    for token in re.split(r"[-_\s]+", name):
        if _SIZE.match(token):
            break
        if token and token not in _SUFFIXES | _VENDORS and not _VERSION.match(token):
            kept.append(re.sub(r"[\d.]+$", "", token) or token)
    return "-".join(kept) or name


SELF_PREFERENCE_NOTE = (
    "A judge tends to prefer text written by its own model family (its own phrasing, length "
    "and style look right to it), so its labels can reward resemblance to itself rather than "
    "quality. Audit with human labels, or judge with a model from another family."
)


class SelfPreference(BaseModel):
    """Whether the judge and the policy that wrote the responses share a model family."""

    judge_models: list[str]
    policy_models: list[str]
    shared_families: list[str]
    same_family: bool
    note: str = SELF_PREFERENCE_NOTE


def self_preference(
    judge_models: Iterable[str | None], policy_models: Iterable[str | None]
) -> SelfPreference | None:
    """Compare the model identities' families; None when either side is unknown."""
    judges = sorted({m for m in judge_models if m})
    policies = sorted({m for m in policy_models if m})
    if not judges or not policies:
        return None
    shared = sorted({model_family(m) for m in judges} & {model_family(m) for m in policies})
    return SelfPreference(
        judge_models=judges,
        policy_models=policies,
        shared_families=shared,
        same_family=bool(shared),
    )
