"""The trained module (policy + value function) and the frozen reference policy.

Policy and critic live in one nn.Module so that a single `accelerator.prepare` call wraps
them (DeepSpeed wants one engine per optimiser) and one checkpoint holds both.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from cai.train.ppo.core import logprobs_from_logits

VALUE_HEAD_FILE = "value_head.pt"


class ActorCritic(nn.Module):
    """A causal-LM policy plus a scalar value head.

    With `critic=None` the head reads the policy's last hidden state (shared trunk); otherwise
    it reads the hidden state of a separate critic trunk (an `AutoModel`).
    """

    def __init__(self, policy: nn.Module, critic: nn.Module | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic
        hidden = (critic or policy).config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / math.sqrt(hidden + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) for the response positions of `input_ids` = [query | response].

        logits[:, t] predicts response token t (scaled by the sampling temperature so the
        log-probs are those of the distribution that was sampled); values[:, t] is V of the
        state before response token t.
        """
        position_ids = position_ids_for(attention_mask)
        shared = self.critic is None
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=shared,
            use_cache=False,
        )
        window = slice(response_start - 1, -1)
        logits = out.logits[:, window] / temperature
        if shared:
            hidden = out.hidden_states[-1]
        else:
            hidden = self.critic(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
        hidden = hidden[:, window].to(self.value_head.weight.dtype)
        return logits, self.value_head(hidden).squeeze(-1)

    def save_value_head(self, directory: str | Path) -> None:
        torch.save(self.value_head.state_dict(), Path(directory) / VALUE_HEAD_FILE)


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` computes them."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


def _dtype(name: str):
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        name, "auto"
    )


def load_actor_critic(
    policy_path: str, value_model: str = "shared", critic_init: str | None = None, dtype="float32"
) -> ActorCritic:
    """Load the trainable policy (and a separate critic trunk when asked)."""
    from transformers import AutoModel, AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=_dtype(dtype))
    critic = None
    if value_model == "separate":
        critic = AutoModel.from_pretrained(critic_init or policy_path, dtype=_dtype(dtype))
    model = ActorCritic(policy, critic)
    # PPO's ratio assumes the same network samples and trains: no dropout anywhere.
    model.eval()
    return model


def load_reference(path: str, dtype="float32") -> nn.Module:
    """The frozen reference policy for the KL penalty: eval mode, no gradients."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype))
    ref.eval()
    ref.requires_grad_(False)
    return ref


@torch.no_grad()
def reference_logprobs(
    ref: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float,
) -> torch.Tensor:
    """log pi_ref(response token t) for every response position."""

    out = ref(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    )
    logits = out.logits[:, response_start - 1 : -1] / temperature
    return logprobs_from_logits(logits, input_ids[:, response_start:])
