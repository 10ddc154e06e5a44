"""One judge-reward spec for GRPO / RLOO and PPO: same fields, same refusals, closed backends."""

from __future__ import annotations

import pytest

from cai.backends import ScriptedSpec
from cai.backends.scripted import ScriptedBackend
from cai.config import ConfigError, load_config
from cai.train.ppo.config import PPOConfig
from cai.train.ppo.rewards import JudgeReward, RewardInputs, build_reward
from cai.train.preference import OnlineTrainConfig, _online_reward_funcs
from cai.train.rewards import AssessReward, JudgeRewardSpec, judge_reward


def _ppo(tmp_path, reward: str) -> PPOConfig:
    path = tmp_path / "ppo.yaml"
    path.write_text(f"model: m\nreward: {reward}\n", encoding="utf-8")
    return load_config(PPOConfig, path)


def test_ppo_and_grpo_share_the_spec_and_read_the_old_ppo_names(tmp_path):
    config = _ppo(
        tmp_path,
        "{kind: judge, principles_per_response: 3, templates_dir: tpl, "
        "backend: {kind: scripted, model: j}}",
    )
    assert type(config.reward) is JudgeRewardSpec
    assert config.reward.principles_per_completion == 3 and config.reward.templates == "tpl"
    assert config.reward.backend == ScriptedSpec(model="j")
    grpo = OnlineTrainConfig(
        model="m", output_dir="o", prompts="p.jsonl", judge={"backend": {"kind": "scripted"}}
    )
    assert grpo.judge == JudgeRewardSpec(backend=ScriptedSpec())
    assert grpo.judge.principles_per_completion == 1


def test_the_judge_backend_is_checked_when_the_config_loads(tmp_path):
    with pytest.raises(ConfigError) as err:
        _ppo(tmp_path, "{kind: judge, backend: {kind: vllm, base_urls: [http://a:1/v1]}}")
    assert "base_urls is not a setting of kind vllm" in str(err.value)


@pytest.mark.parametrize("backend", ["", ", backend: {}"])
def test_ppo_and_grpo_refuse_a_judge_without_a_backend_alike(tmp_path, backend):
    config = _ppo(tmp_path, "{kind: judge" + backend + "}")
    assert config.reward.backend is None
    with pytest.raises(ConfigError) as ppo_err:
        build_reward(config.reward, tokenizer=None)
    grpo = OnlineTrainConfig(model="m", output_dir="o", prompts="p.jsonl", judge=config.reward)
    with pytest.raises(ConfigError) as grpo_err:
        _online_reward_funcs(grpo)
    assert str(ppo_err.value) == str(grpo_err.value)
    assert str(ppo_err.value).startswith("backend: the judge reward has no backend. Set the")


def test_ppo_refuses_a_pairwise_judge(tmp_path):
    config = _ppo(tmp_path, "{kind: judge, mode: pairwise, backend: {kind: scripted}}")
    with pytest.raises(ConfigError, match="mode: assess"):
        build_reward(config.reward, tokenizer=None)


def test_a_backend_built_from_the_spec_is_closed_and_a_given_one_is_not(tmp_path):
    from contextlib import ExitStack

    spec = JudgeRewardSpec(
        backend={"kind": "scripted", "model": "j", "cache_path": str(tmp_path / "c.sqlite")}
    )
    with ExitStack() as owned:
        reward = build_reward(spec, tokenizer=None, owned=owned)
        assert isinstance(reward, JudgeReward) and isinstance(reward.assess, AssessReward)
        inputs = RewardInputs([[{"role": "user", "content": "q"}]], ["a"], [[1]], [True])
        assert reward(inputs) == [pytest.approx(0.5)]  # the scripted judge has no preference
        cache = reward.assess.backend.cache
        assert cache._conn is not None
    assert cache._conn is None  # closed with the trainer's stack

    given = ScriptedBackend()
    with judge_reward(spec, given) as assess:
        assert assess.backend is given


@pytest.mark.parametrize(
    "reward, message",
    [
        ("{kind: judge}", "the judge reward has no backend"),
        ("{kind: judge, mode: pairwise, backend: {kind: scripted}}", "mode: assess"),
    ],
)
def test_the_ppo_trainer_refuses_a_bad_judge_reward_before_loading_any_model(
    tmp_path, reward, message
):
    """The policy `m` does not exist: an error about it would mean a model load came first."""
    from cai.train.ppo.trainer import PPOTrainer

    config = _ppo(tmp_path, reward)
    with pytest.raises(ConfigError, match=message):
        PPOTrainer(config)
