"""The model card of a PPO policy (output_dir/final/README.md), built like every trainer's
(`cai.train.cards`): base model, PPO settings, prompts, reward, judge and constitution,
the last step's metrics."""

from __future__ import annotations

from pathlib import Path

from cai.train.cards import (
    CardInputs,
    build_card,
    constitution_facts,
    dataset_facts,
    public_model_name,
    write_model_card,
)
from cai.train.ppo.config import PPOConfig, RewardModelSpec
from cai.train.rewards import JudgeRewardSpec

PPO_SETTINGS = (
    "steps",
    "batch_size",
    "mini_batch_size",
    "ppo_epochs",
    "learning_rate",
    "lr_schedule",
    "kl_coef",
    "adaptive_kl",
    "target_kl",
    "cliprange",
    "vf_coef",
    "ptx_coef",
    "max_new_tokens",
    "temperature",
    "value_model",
    "reward_normalization",
    "dtype",
    "seed",
)
SHOWN_METRICS = ("reward/mean", "kl/mean", "policy/entropy", "response/length", "value/loss")


def card_inputs(config: PPOConfig) -> CardInputs:
    reward = config.reward
    judge = reward if isinstance(reward, JudgeRewardSpec) else None
    judge_model = getattr(judge.backend, "model", None) if judge and judge.backend else None
    return CardInputs(
        method="PPO (cai's own, on accelerate) under a KL penalty to the starting policy",
        settings=PPO_SETTINGS,
        data=[dataset_facts(config.prompts, "prompts")] if config.prompts else [],
        judge_model=public_model_name(judge_model) if judge_model else None,
        constitution=constitution_facts(judge.constitution) if judge else None,
        reward_models=[public_model_name(reward.path)]
        if isinstance(reward, RewardModelSpec)
        else [],
        notes={"reward": reward.kind if reward is not None else "a reward function in code"},
        tags=["ppo", "rlhf", "rlaif"],
        common=False,
    )


def write_ppo_card(
    config: PPOConfig, final_dir: Path, metrics: list[dict], resumed_from: int, processes: int
) -> Path:
    """README.md and cai_training.json in the final policy's directory."""
    last = metrics[-1] if metrics else {}
    shown = {k: float(last[k]) for k in SHOWN_METRICS if isinstance(last.get(k), int | float)}
    card = build_card(
        config,
        "PPO policy",
        card_inputs(config),
        shown,
        steps=int(last.get("step", 0)) or None,
        processes=processes,
        resumed_from=f"step {resumed_from}" if resumed_from else None,
    )
    facts = {
        "base_model": config.model,
        "prompts": config.prompts,
        "global_step": last.get("step"),
        "processes": processes,
        "resumed_from": resumed_from,
        "config": config.model_dump(mode="json"),
    }
    return write_model_card(final_dir, card, facts)
