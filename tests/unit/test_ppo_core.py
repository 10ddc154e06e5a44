"""PPO math against values worked out by hand (see the comments next to each expectation)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from cai.train.ppo import core  # noqa: E402


def close(tensor, expected, tol=1e-5):
    assert torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype), atol=tol), (
        tensor.tolist(),
        expected,
    )


def test_kl_penalty_puts_score_on_last_real_token_and_ignores_padding():
    scores = torch.tensor([1.0, 2.0])
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.0, 7.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = core.kl_penalty_rewards(scores, logprobs, ref, mask, kl_coef=0.1)
    # kl = logp - ref: row0 [0.5, 0, -1]; row1 [0.5, 1, (pad) 0]
    close(kl, [[0.5, 0.0, -1.0], [0.5, 1.0, 0.0]])
    # rewards = -0.1 * kl, plus the score on the last real token (index 2 and index 1)
    close(rewards, [[-0.05, 0.0, 0.1 + 1.0], [-0.05, -0.1 + 2.0, 0.0]])


def test_kl_penalty_refuses_empty_response():
    with pytest.raises(ValueError, match="at least one token"):
        core.kl_penalty_rewards(
            torch.tensor([1.0]), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 0.1
        )


def test_gae_full_length():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = core.compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # t2: delta = 1 + 0 - 0.7 = 0.3            A2 = 0.3
    # t1: delta = 0 + 0.7 - 0.6 = 0.1          A1 = 0.1 + 0.5 * 0.3 = 0.25
    # t0: delta = 0 + 0.6 - 0.5 = 0.1          A0 = 0.1 + 0.5 * 0.25 = 0.225
    close(adv, [[0.225, 0.25, 0.3]])
    close(ret, [[0.725, 0.85, 1.0]])


def test_gae_stops_at_the_end_of_a_short_response():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])  # 5.0 and 9.0 sit on padding
    values = torch.tensor([[0.5, 0.6, 9.0]])
    adv, ret = core.compute_gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), 1.0, 0.5)
    # t1 is terminal: delta = 1 - 0.6 = 0.4; t0: 0.1 + 0.5 * 0.4 = 0.3
    close(adv, [[0.3, 0.4, 0.0]])
    close(ret, [[0.8, 1.0, 0.0]])


def test_gae_with_discount_and_lambda_one_is_discounted_return_minus_value():
    adv, _ = core.compute_gae(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[0.2, 0.4]]), torch.ones(1, 2), 0.9, 1.0
    )
    # A0 = 0.9 * 1 - 0.2 = 0.7, A1 = 1 - 0.4 = 0.6
    close(adv, [[0.7, 0.6]])


def test_clipped_policy_loss():
    ratios = torch.tensor([[1.5, 0.5, 1.1, 0.5, 3.0]])
    logprobs = torch.log(ratios)
    old = torch.zeros(1, 5)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    out = core.policy_loss(logprobs, old, adv, mask, cliprange=0.2)
    # per token max(-A r, -A clip(r)):
    #   r=1.5 A=1:  max(-1.5, -1.2) = -1.2   (clipped term active)
    #   r=0.5 A=1:  max(-0.5, -0.8) = -0.5
    #   r=1.1 A=-1: max(1.1, 1.1)   =  1.1
    #   r=0.5 A=-1: max(0.5, 0.8)   =  0.8   (clipped term active)
    #   the fifth token is padding
    close(out.loss, (-1.2 - 0.5 + 1.1 + 0.8) / 4)
    close(out.clip_fraction, 0.5)
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.5, 1.1, 0.5)]
    close(out.approx_kl, sum(k3) / 4)


def test_policy_loss_gradient_is_zero_where_clipped():
    logprobs = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)
    out = core.policy_loss(logprobs, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.2)
    out.loss.backward()
    # d/dlogp of -A r / 2 = -r / 2 for the unclipped token; the clipped one gets no gradient
    close(logprobs.grad, [[0.0, -1.1 / 2]])


def test_clipped_value_loss():
    values = torch.tensor([[1.5, 0.9, 50.0]])
    old = torch.tensor([[1.0, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    out = core.value_loss(values, old, returns, torch.tensor([[1.0, 1.0, 0.0]]), 0.2)
    # token0: clipped V = 1.2; errors (1.5-2)^2 = 0.25, (1.2-2)^2 = 0.64 -> 0.64 (clipped active)
    # token1: inside the clip range; error (0.9-0)^2 = 0.81
    close(out.loss, 0.5 * (0.64 + 0.81) / 2)
    close(out.clip_fraction, 0.5)


def test_masked_whiten_and_mean():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    close(core.masked_mean(values, mask), 2.0)
    close(core.masked_var(values, mask), 2.0 / 3.0)
    s = math.sqrt(1.5)  # 1 / sqrt(2/3)
    close(core.masked_whiten(values, mask), [-s, 0.0, s, 0.0], tol=1e-4)
    close(core.masked_whiten(values, mask, shift_mean=False), [2 - s, 2.0, 2 + s, 0.0], tol=1e-4)


def test_entropy_and_logprobs_from_logits():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9]])
    close(
        core.entropy_from_logits(logits),
        [math.log(4.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))],
    )
    close(core.logprobs_from_logits(logits, torch.tensor([2, 1])), [math.log(0.25), math.log(0.75)])


def test_adaptive_kl_controller_follows_ziegler():
    ctl = core.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL 12 is twice the target: error clipped to +0.2; beta *= 1 + 0.2 * 100 / 10000
    close(torch.tensor(ctl.update(12.0, 100)), 0.1 * 1.002)
    ctl = core.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL 4.5: error -0.25 clipped to -0.2; n/horizon = 0.1
    close(torch.tensor(ctl.update(4.5, 1000)), 0.1 * (1 - 0.2 * 0.1))
    ctl = core.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL 6.6: error 0.1 inside the clip range
    close(torch.tensor(ctl.update(6.6, 1000)), 0.1 * (1 + 0.1 * 0.1))
    assert core.FixedKLController(0.3).update(100.0, 64) == 0.3


def test_running_moments_match_the_whole_sample():
    moments = core.RunningMoments()
    moments.update(torch.tensor([1.0, 2.0, 3.0]))
    moments.update(torch.tensor([4.0, 5.0]))
    assert moments.count == 5
    assert moments.mean == pytest.approx(3.0)
    assert moments.var == pytest.approx(2.0)
    assert moments.std == pytest.approx(math.sqrt(2.0))
