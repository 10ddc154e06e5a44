"""Pointwise assessment: does one response follow a principle? One scored token per principle.

The judge reward of GRPO / RLOO / PPO (`cai.train.rewards.AssessReward`) and the reward
service's score mode (`cai.reward.scoring`) ask the same question the same way: the "assess"
template per principle, answered "A" (follows) or "B" (does not), P("A") read from log-probs.
"""

from __future__ import annotations

from collections.abc import Iterable

from cai.backends.base import ChoiceRequest, Message
from cai.constitution import Constitution, Principle
from cai.templates import TemplateSet

FOLLOWS, BREAKS = "A", "B"


def assessment_requests(
    templates: TemplateSet,
    constitution: Constitution,
    conversation: list[Message],
    response: str,
    principles: Iterable[Principle],
) -> list[ChoiceRequest]:
    """One choice request per principle; `probs[0]` of its score is P(follows)."""
    out = []
    for principle in principles:
        rendered = templates.render(
            "assess",
            conversation=conversation,
            response=response,
            principle=principle,
            constitution=constitution,
        )
        out.append(
            ChoiceRequest(
                messages=rendered.messages,
                assistant_prefix=rendered.assistant_prefix,
                choices=(FOLLOWS, BREAKS),
            )
        )
    return out
