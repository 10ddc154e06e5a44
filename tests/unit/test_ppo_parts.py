"""PPO pieces without a model: config checks, EOS handling, synthetic reward, metrics files."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cai.train.ppo.config import PPOConfig
from cai.train.ppo.logging import MetricsLogger, read_metrics
from cai.train.ppo.rewards import RewardError, RewardInputs, TokenFractionReward, checked_scores
from cai.train.ppo.rollout import cut_at_eos


def test_config_defaults_follow_the_literature():
    config = PPOConfig(model="m")
    assert (config.kl_coef, config.cliprange, config.cliprange_value) == (0.05, 0.2, 0.2)
    assert (config.ppo_epochs, config.gamma, config.lam) == (4, 1.0, 0.95)
    assert config.optimizer_steps_per_step == 4 * (64 // 16)


def test_config_rejects_batch_shapes_that_drop_samples():
    with pytest.raises(ValidationError, match="multiple of mini_batch_size"):
        PPOConfig(model="m", batch_size=10, mini_batch_size=4)
    with pytest.raises(ValidationError, match="gradient_accumulation_steps"):
        PPOConfig(model="m", batch_size=8, mini_batch_size=4, gradient_accumulation_steps=3)
    with pytest.raises(ValidationError, match="Extra inputs"):
        PPOConfig(model="m", kl_coeff=0.1)


def test_config_reward_union_picks_by_kind():
    config = PPOConfig(model="m", reward={"kind": "tokens", "tokens": ["A"]})
    assert config.reward.tokens == ["A"]
    with pytest.raises(ValidationError):
        PPOConfig(model="m", reward={"kind": "python", "target": "not a target"})


def test_cut_at_eos_keeps_eos_and_drops_padding():
    assert cut_at_eos([5, 6, 2, 0, 0], {2}, 0) == ([5, 6, 2], True)
    assert cut_at_eos([5, 6, 7], {2}, 0) == ([5, 6, 7], False)
    assert cut_at_eos([5, 0, 0], {2}, 0) == ([5], False)


def test_token_fraction_reward_ignores_eos():
    reward = TokenFractionReward([7], eos_ids={2})
    inputs = RewardInputs(
        prompts=[[], []],
        responses=["", ""],
        response_ids=[[7, 7, 3, 2], [3, 3]],
        finished=[True, False],
    )
    assert reward(inputs) == [pytest.approx(2 / 3), 0.0]


def test_checked_scores_refuses_bad_rewards():
    assert checked_scores([1, 2], 2, "r") == [1.0, 2.0]
    with pytest.raises(RewardError, match="3 scores for 2"):
        checked_scores([1, 2, 3], 2, "r")
    with pytest.raises(RewardError, match="non-finite"):
        checked_scores([1.0, float("nan")], 2, "r")


def test_metrics_logger_truncates_on_resume_and_keeps_csv_in_step(tmp_path):
    logger = MetricsLogger(tmp_path)
    for step in range(1, 5):
        logger.log({"step": step, "reward/mean": step / 10})
    logger.truncate_after(2)
    logger.log({"step": 3, "reward/mean": 0.33})
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["reward/mean"] == 0.33
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,reward/mean"
    assert lines[1:] == ["1,0.1", "2,0.2", "3,0.33"]
    png = logger.plot()
    assert png is not None and png.stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_seeded_sampler_draws_each_row_from_its_own_seed():
    """A row's token depends on its logits and its seed only, not on the rest of the batch:
    split a batch in two and every row draws the same tokens."""
    import torch

    from cai.train.ppo.rollout import SeededSampler

    logits = torch.randn(4, 3, 50, generator=torch.Generator().manual_seed(0))
    seeds = [11, 12, 13, 14]

    def draw(rows, row_seeds):
        sampler = SeededSampler(row_seeds, prompt_width=2, max_new_tokens=3, temperature=0.7)
        picks = []
        for t in range(3):
            ids = torch.zeros(len(rows), 2 + t, dtype=torch.long)
            scores = sampler(ids, logits[rows, t])
            assert (scores == 0).sum(1).tolist() == [1] * len(rows)  # one token left per row
            picks.append(scores.argmax(-1))
        return torch.stack(picks, 1)

    whole = draw([0, 1, 2, 3], seeds)
    halves = torch.cat([draw([0, 1], seeds[:2]), draw([2, 3], seeds[2:])])
    assert torch.equal(whole, halves)
    assert not torch.equal(draw([0, 1], [21, 22]), whole[:2])  # the seed matters


def test_seeded_sampler_follows_the_tempered_softmax():
    import torch

    from cai.train.ppo.rollout import SeededSampler

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    n = 4000
    sampler = SeededSampler(list(range(n)), prompt_width=0, max_new_tokens=1, temperature=2.0)
    picks = sampler(torch.zeros(n, 0, dtype=torch.long), logits.expand(n, 4)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=4).float() / n
    expected = torch.softmax(logits[0] / 2.0, -1)
    assert torch.allclose(frequencies, expected, atol=0.03), (frequencies, expected)


def test_policy_and_value_losses_split_into_micro_batches_add_up():
    """With the minibatch's token count as normalizer, micro-batch losses sum to the minibatch
    token mean, however the rows are split (over micro-batches or processes)."""
    import torch

    from cai.train.ppo import core

    gen = torch.Generator().manual_seed(0)
    lp, old, adv = (torch.randn(4, 5, generator=gen) for _ in range(3))
    mask = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]]
    ).float()
    whole = core.policy_loss(lp, old, adv, mask, 0.2)
    tokens = mask.sum()
    parts = [
        core.policy_loss(lp[r], old[r], adv[r], mask[r], 0.2, tokens) for r in ([0], [1, 2, 3])
    ]
    assert torch.isclose(sum(p.loss for p in parts), whole.loss)
    assert torch.isclose(sum(p.clip_fraction for p in parts), whole.clip_fraction)
    v_whole = core.value_loss(lp, old, adv, mask, 0.2)
    v_parts = [
        core.value_loss(lp[r], old[r], adv[r], mask[r], 0.2, tokens) for r in ([0, 1], [2, 3])
    ]
    assert torch.isclose(sum(p.loss for p in v_parts), v_whole.loss)


def test_whitening_with_an_all_reduce_uses_the_whole_batch():
    """Two processes holding rows [0] and [1:4] whiten exactly as one holding all four."""
    import torch

    from cai.train.ppo import core

    values = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    mask = (torch.rand(4, 6, generator=torch.Generator().manual_seed(2)) > 0.3).float()

    def sum_with(other_values, other_mask):
        """An all-reduce as the process holding the other rows would complete it."""
        seen: list[torch.Tensor] = []

        def all_reduce(t):
            if len(seen) == 0:
                out = t + other_mask.sum()
            elif len(seen) == 1:
                out = t + core.masked_sum(other_values, other_mask)
            else:
                mean = seen[1] / seen[0].clamp(min=1)
                out = t + core.masked_sum((other_values - mean) ** 2, other_mask)
            seen.append(out)
            return out

        return all_reduce

    parts = [(slice(0, 1), slice(1, 4)), (slice(1, 4), slice(0, 1))]
    split = [
        core.masked_whiten(
            values[mine], mask[mine], all_reduce=sum_with(values[other], mask[other])
        )
        for mine, other in parts
    ]
    assert torch.allclose(torch.cat(split), core.masked_whiten(values, mask), atol=1e-6)
    assert not torch.allclose(core.masked_whiten(values[:1], mask[:1]), split[0], atol=1e-3)
