"""A rollout as padded tensors, and what the policy and the reference say about it.

Queries are left-padded and responses right-padded to one width, so every response starts at
the same column (`start`) and the loss mask covers real response tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cai.train.ppo import core
from cai.train.ppo.models import reference_logprobs
from cai.train.ppo.rollout import Rollout


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    """[B, T] float: 1 on real response tokens."""
    start: int


def rollout_tensors(rollout: Rollout, pad_token_id: int, device) -> RolloutBatch:
    width_q = max(len(q) for q in rollout.query_ids)
    width_r = max(len(r) for r in rollout.response_ids)
    n = len(rollout.query_ids)
    ids = torch.full((n, width_q + width_r), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width_q + width_r), dtype=torch.long)
    for row, (q, r) in enumerate(zip(rollout.query_ids, rollout.response_ids, strict=True)):
        ids[row, width_q - len(q) : width_q] = torch.tensor(q)
        ids[row, width_q : width_q + len(r)] = torch.tensor(r)
        attention[row, width_q - len(q) : width_q + len(r)] = 1
    mask = attention[:, width_q:].float()
    return RolloutBatch(ids.to(device), attention.to(device), mask.to(device), width_q)


@torch.no_grad()
def score_rollout(model, reference, batch: RolloutBatch, size: int, temperature: float):
    """Old log-probs, values and entropy of the policy, and reference log-probs, computed
    `size` rows at a time."""
    chunks = {"lp": [], "v": [], "ref": [], "ent": []}
    for lo in range(0, batch.input_ids.shape[0], size):
        ids, att = batch.input_ids[lo : lo + size], batch.attention_mask[lo : lo + size]
        logits, values = model(ids, att, batch.start, temperature)
        labels = ids[:, batch.start :]
        chunks["lp"].append(core.logprobs_from_logits(logits, labels))
        chunks["ent"].append(core.entropy_from_logits(logits))
        chunks["v"].append(values.float())
        chunks["ref"].append(reference_logprobs(reference, ids, att, batch.start, temperature))
    mask = batch.mask
    return tuple(torch.cat(chunks[k]) * mask for k in ("lp", "v", "ref", "ent"))
