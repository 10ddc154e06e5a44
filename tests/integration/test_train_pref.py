"""DPO, GRPO and RLOO wrappers run a few real steps on CPU with the tiny models."""

from __future__ import annotations

import pytest

from cai.testing.data import write_random_preferences, write_random_prompts

pytestmark = pytest.mark.slow


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _changed(before, after_dir) -> bool:
    after = _weights(after_dir)
    return any(not (before[k] == after[k]).all() for k in before)


def test_dpo_trains_on_cai_preference_rows_and_resumes(tiny_model_dir, tmp_path):
    from cai.train.preference import DPOTrainConfig, train_dpo

    data = write_random_preferences(tmp_path / "prefs.jsonl", principles=["harmless"])
    config = DPOTrainConfig(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "dpo"),
        train_data=data,
        max_steps=2,
        per_device_train_batch_size=4,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        dtype="float32",
    )
    result = train_dpo(config)
    assert result.global_step == 2 and "loss" in result.metrics
    assert _changed(_weights(tiny_model_dir), tmp_path / "dpo")
    assert (tmp_path / "dpo" / "checkpoint-2").is_dir()
    resumed = train_dpo(config.model_copy(update={"max_steps": 3, "resume": True}))
    assert resumed.global_step == 3 and resumed.resumed_from.endswith("checkpoint-2")


def test_grpo_with_a_reward_model(tiny_model_dir, tiny_reward_dir, tmp_path):
    from cai.train.preference import OnlineTrainConfig, train_grpo

    config = OnlineTrainConfig(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "grpo"),
        prompts=write_random_prompts(tmp_path / "prompts.jsonl", n=4),
        reward_models=[str(tiny_reward_dir)],
        num_generations=2,
        max_completion_length=8,
        per_device_train_batch_size=2,
        max_steps=2,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        dtype="float32",
    )
    result = train_grpo(config)
    assert result.global_step == 2
    reward_keys = [k for k in result.metrics if k.startswith("rewards/")]
    assert reward_keys, result.metrics
    assert (tmp_path / "grpo" / "checkpoint-2").is_dir()
    assert _changed(_weights(tiny_model_dir), tmp_path / "grpo")
    assert "\n# GRPO policy\n" in (tmp_path / "grpo" / "README.md").read_text()


@pytest.mark.vllm
def test_rloo_with_the_constitutional_judge_as_reward(tiny_model_dir, vllm_backend, tmp_path):
    """The judge (real vLLM engine, "assess" template, log-prob scoring) rewards each completion."""
    from cai.train.preference import OnlineTrainConfig, train_online
    from cai.train.rewards import JudgeRewardSpec

    config = OnlineTrainConfig(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "rloo"),
        prompts=write_random_prompts(tmp_path / "prompts.jsonl", n=4),
        judge=JudgeRewardSpec(constitution="default", principles_per_completion=2),
        num_generations=2,
        max_completion_length=8,
        per_device_train_batch_size=2,
        max_steps=2,
        save_steps=10,
        logging_steps=1,
        learning_rate=1e-3,
        dtype="float32",
    )
    result = train_online("rloo", config, judge_backend=vllm_backend)
    assert result.global_step == 2
    judged = [v for k, v in result.metrics.items() if k.startswith("rewards/AssessReward")]
    assert judged, result.metrics
    mean = result.metrics["rewards/AssessReward/mean"]
    assert 0.0 < mean < 1.0  # a probability from the judge, not a constant stand-in
