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
