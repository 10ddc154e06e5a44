"""Monitor samples: seeded generation on the fixed prompts and a fresh KL estimate.

Generation reuses PPO's `TransformersRollout` (one seeded random stream per prompt, pure
ancestral sampling), so a check samples the same way at every step and never draws from the
global RNG: a monitored run trains exactly as an unmonitored one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cai.train.ppo.models import reference_logprobs
from cai.train.ppo.rollout import TransformersRollout


@dataclass
class Samples:
    """One response per monitor prompt."""

    texts: list[str]
    response_ids: list[list[int]]
    finished: list[bool]
    kl: float | None = None
    """Mean over responses of sum_t (log pi - log pi_ref), nats (PPO's `kl/mean` estimator)."""

    @property
    def lengths(self) -> list[int]:
        """Response lengths in tokens (an ending EOS included)."""
        return [len(ids) for ids in self.response_ids]


PolicyContext = Callable[[], contextlib.AbstractContextManager[nn.Module]]


def generate_samples(
    tokenizer,
    policy_context: PolicyContext,
    query_ids: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    seed: int,
    device,
    batch_size: int,
) -> Samples:
    """Sample one response per query, `batch_size` queries at a time (query i: seed + i)."""

    engine = TransformersRollout(tokenizer, policy_context, device)
    responses: list[list[int]] = []
    finished: list[bool] = []
    for lo in range(0, len(query_ids), batch_size):
        rollout = engine.generate(
            query_ids[lo : lo + batch_size], max_new_tokens, temperature, seed + lo
        )
        responses += rollout.response_ids
        finished += rollout.finished
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return Samples(texts, responses, finished)


def pack(query_ids: list[list[int]], response_ids: list[list[int]], pad_id: int):
    """[left-padded query | right-padded response] ids, attention mask, response mask, start."""
    width_q = max(len(q) for q in query_ids)
    width_r = max(len(r) for r in response_ids)
    n = len(query_ids)
    ids = torch.full((n, width_q + width_r), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_q + width_r), dtype=torch.long)
    for row, (q, r) in enumerate(zip(query_ids, response_ids, strict=True)):
        ids[row, width_q - len(q) : width_q] = torch.tensor(q, dtype=torch.long)
        ids[row, width_q : width_q + len(r)] = torch.tensor(r, dtype=torch.long)
        attention[row, width_q - len(q) : width_q + len(r)] = 1
    return ids, attention, attention[:, width_q:].float(), width_q


@torch.no_grad()
def kl_to_reference(
    policy_context: PolicyContext,
    reference: nn.Module,
    query_ids: list[list[int]],
    response_ids: list[list[int]],
    pad_id: int,
    temperature: float,
    device,
    batch_size: int,
) -> float:
    """Mean over responses of the summed per-token log-ratio log pi - log pi_ref (at the
    sampling temperature), the estimator PPO logs as `kl/mean`."""

    totals: list[torch.Tensor] = []
    with policy_context() as policy:
        for lo in range(0, len(query_ids), batch_size):
            ids, att, mask, start = pack(
                query_ids[lo : lo + batch_size], response_ids[lo : lo + batch_size], pad_id
            )
            ids, att, mask = ids.to(device), att.to(device), mask.to(device)
            own = reference_logprobs(policy, ids, att, start, temperature)
            ref = reference_logprobs(reference, ids, att, start, temperature)
            totals.append(((own - ref) * mask).sum(1).cpu())
    return torch.cat(totals).mean().item()
