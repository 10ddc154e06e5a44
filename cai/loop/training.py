"""The training half of a round: refresh the reward model, then improve the policy.

Both call the `cai train` library functions with `resume` on, so a stage a kill interrupted
continues from its newest checkpoint instead of starting over.
"""

from __future__ import annotations

from typing import Any

from cai.loop.context import RoundContext
from cai.train.ppo.config import PPOConfig
from cai.train.preference import DPOTrainConfig, OnlineTrainConfig, train_dpo, train_grpo
from cai.train.reward import RewardTrainConfig, train_reward_model
from cai.train.rewards import JudgeRewardSpec


def reward_model_stage(ctx: RoundContext) -> dict[str, Any]:
    """Train round r's reward model on the mixed data, starting from the previous one."""
    settings = ctx.config.reward_model
    assert settings is not None  # the stage runs only with a reward_model section
    out = ctx.dir / "reward_model"
    config = RewardTrainConfig(
        **{
            **settings.train,
            "model": ctx.reward_model_in,
            "train_data": str(ctx.path(ctx.result("data")["train_path"])),
            "output_dir": str(out),
            "resume": "auto",
        }
    )
    result = train_reward_model(config)
    return {"path": ctx.rel(out), "steps": result.global_step, "metrics": result.metrics}


def _judge_spec(ctx: RoundContext) -> dict[str, Any]:
    return ctx.config.judge_backend.model_dump(mode="json")


def _dpo(ctx: RoundContext, out: str) -> dict[str, Any]:
    config = DPOTrainConfig(
        **{
            **ctx.config.policy_step.train,
            "model": ctx.policy_in,
            "train_data": str(ctx.path(ctx.result("data")["train_path"])),
            "output_dir": out,
            "resume": "auto",
        }
    )
    result = train_dpo(config)
    return {"path": ctx.rel(out), "steps": result.global_step, "metrics": result.metrics}


def _grpo(ctx: RoundContext, out: str) -> dict[str, Any]:
    by_judge = ctx.config.policy_step.reward == "judge"
    judge = None
    if by_judge:
        judge = JudgeRewardSpec(
            backend=_judge_spec(ctx),
            constitution=ctx.config.constitution,
            templates=ctx.config.templates,
            seed=ctx.config.judge.seed,
        )
    config = OnlineTrainConfig(
        **{
            **ctx.config.policy_step.train,
            "model": ctx.policy_in,
            "prompts": str(ctx.path(ctx.result("prompts")["path"])),
            "output_dir": out,
            "resume": "auto",
            "reward_models": [] if by_judge else [str(ctx.dir / "reward_model")],
            "judge": judge,
        }
    )
    result = train_grpo(config, judge_backend=ctx.judge_backend if by_judge else None)
    return {"path": ctx.rel(out), "steps": result.global_step, "metrics": result.metrics}


def _ppo(ctx: RoundContext, out: str) -> dict[str, Any]:
    import json

    from cai.train.ppo.trainer import train_ppo

    if ctx.config.policy_step.reward == "judge":
        reward = {
            "kind": "judge",
            "constitution": ctx.config.constitution,
            "backend": _judge_spec(ctx),
            "templates": ctx.config.templates,
        }
    else:
        reward = {"kind": "model", "path": str(ctx.dir / "reward_model")}
    config = PPOConfig(
        **{
            **ctx.config.policy_step.train,
            "model": ctx.policy_in,
            "prompts": str(ctx.path(ctx.result("prompts")["path"])),
            "output_dir": out,
            "resume": True,
            "reward": reward,
        }
    )
    result = train_ppo(config)
    lines = result.metrics_path.read_text(encoding="utf-8").splitlines()
    last = json.loads(lines[-1]) if lines else {}
    final = result.final_model_dir or (ctx.dir / "policy" / "final")
    return {
        "path": ctx.rel(final),
        "steps": result.last_step,
        "metrics": {k: v for k, v in last.items() if isinstance(v, int | float)},
        "kl": last.get("kl/mean"),
        "train_reward": last.get("reward/mean"),
    }


def policy_stage(ctx: RoundContext) -> dict[str, Any]:
    """Policy r -> policy r+1 with the configured method (rounds/<r>/policy)."""
    out = str(ctx.dir / "policy")
    method = ctx.config.policy_step.method
    runner = {"dpo": _dpo, "grpo": _grpo, "ppo": _ppo}[method]
    return {"method": method, **runner(ctx, out)}
