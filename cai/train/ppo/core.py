"""The tensor math of PPO for language models, free of models, data and devices.

Every function works on right-padded [batch, response_len] tensors with a 0/1 `mask` that
marks real response tokens (the padding after an early end is 0), so padding never leaks
into a loss, an advantage or a logged statistic. Kept pure so each formula is unit-tested
against values computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (values * mask).sum() if dim is None else (values * mask).sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where mask is 1 (0 when there are none)."""
    total = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(values, mask, dim) / total.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population variance over the masked positions."""
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask)


def masked_whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Scale to unit variance over the masked positions (and zero mean if shift_mean).

    Padding positions come back as 0 so they cannot contribute downstream. `all_reduce` (a sum
    over processes) makes the mean and variance those of the whole batch across processes, so
    N processes whiten exactly as one process holding all their rows would.
    """
    if all_reduce is None:
        mean, var = masked_mean(values, mask), masked_var(values, mask)
    else:
        count = all_reduce(mask.sum()).clamp(min=1)
        mean = all_reduce(masked_sum(values, mask)) / count
        var = all_reduce(masked_sum((values - mean) ** 2, mask)) / count
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) under softmax(logits), in float32 whatever the model dtype."""
    logits = logits.float()
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: logsumexp(z) - sum(p * z)."""
    logits = logits.float()
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def kl_penalty_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of RLHF: -beta * (log pi - log pi_ref) at every token, plus the
    sequence score on the last real token (Ziegler et al. 2019).

    Returns (rewards, kl), both [batch, T] and zero on padding. The KL estimate per token is the
    sampled log-ratio (k1), whose sum over a response is an unbiased estimate of KL(pi || pi_ref).
    """
    lengths = mask.sum(1).long()
    if bool((lengths == 0).any()):
        raise ValueError("every response needs at least one token to carry its score")
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (lengths - 1).unsqueeze(1)
    rewards = rewards.scatter_add(1, last, scores.to(rewards.dtype).unsqueeze(1))
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t with V = 0 after the last real token (the episode
    ends there), A_t = delta_t + gamma * lam * A_{t+1}. Returns (advantages, returns = A + V).
    """
    rewards, values = rewards * mask, values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def _token_mean(values: torch.Tensor, mask: torch.Tensor, normalizer) -> torch.Tensor:
    if normalizer is None:
        return masked_mean(values, mask)
    return masked_sum(values, mask) / normalizer


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    normalizer: torch.Tensor | float | None = None,
) -> PolicyLossOut:
    """PPO's clipped surrogate: mean over tokens of max(-A r, -A clip(r, 1-eps, 1+eps)).

    approx_kl is the k3 estimator E[(r - 1) - log r] of KL(old || new), >= 0 per token
    (Schulman, "Approximating KL divergence"); clip_fraction is the share of tokens whose
    clipped term was the active one. With `normalizer` every term is the masked sum divided
    by it instead of by the tokens in `mask`: given the token count of a whole minibatch, the
    terms of its micro-batches (and processes) add up to the minibatch's token mean.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = _token_mean(torch.maximum(unclipped, clipped), mask, normalizer)
    with torch.no_grad():
        clip_fraction = _token_mean((clipped > unclipped).float(), mask, normalizer)
        approx_kl = _token_mean((ratio - 1.0) - log_ratio, mask, normalizer)
    return PolicyLossOut(loss, clip_fraction, approx_kl)


@dataclass
class ValueLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
    normalizer: torch.Tensor | float | None = None,
) -> ValueLossOut:
    """Clipped value loss: 0.5 * mean max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2)
    (`normalizer` as in `policy_loss`)."""
    clipped_values = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * _token_mean(torch.maximum(unclipped_err, clipped_err), mask, normalizer)
    with torch.no_grad():
        clip_fraction = _token_mean((clipped_err > unclipped_err).float(), mask, normalizer)
    return ValueLossOut(loss, clip_fraction)


class AdaptiveKLController:
    """Proportional controller for beta (Ziegler et al. 2019, eq. 2).

    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_samples / horizon).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_samples: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
        return self.value


class FixedKLController:
    """A constant beta, with the same interface as the adaptive controller."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_samples: int) -> float:
        return self.value


@dataclass
class RunningMoments:
    """Running mean and standard deviation of scores across all steps (parallel Welford)."""

    mean: float = 0.0
    var: float = 1.0
    count: float = 0.0

    def update(self, batch: torch.Tensor) -> None:
        batch = batch.detach().double().flatten()
        n = batch.numel()
        if n == 0:
            return
        b_mean = batch.mean().item()
        b_var = batch.var(unbiased=False).item()
        if self.count == 0:
            self.mean, self.var, self.count = b_mean, b_var, float(n)
            return
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))
