"""The tiny-model PPO setup the PPO tests share: training prompts, the synthetic token-share
reward and a small, fast configuration that each test adjusts.

The reward is the share of response tokens whose id is a multiple of 4 (about a quarter of the
vocabulary, so a random policy starts near 0.25 and every batch carries signal).
"""

from __future__ import annotations

PROMPTS = [
    [{"role": "user", "content": f"question {i} about the world and people"}] for i in range(32)
]


def paid_token_ids(tokenizer) -> list[int]:
    """The ids the synthetic reward pays for: every fourth one."""
    return list(range(0, len(tokenizer), 4))


def token_share_reward(tokenizer):
    """The synthetic reward: share of paid tokens in each response, end of text not counted."""
    from cai.train.ppo.rewards import TokenFractionReward

    return TokenFractionReward(paid_token_ids(tokenizer), {tokenizer.eos_token_id})


def tiny_ppo_config(model_dir, out, **overrides):
    """A PPO run that learns the synthetic reward in a few CPU minutes: no checkpoints, no
    saved model, no plot, no progress bar, never resuming unless a test asks."""
    from cai.train.ppo.config import PPOConfig

    settings = dict(
        model=str(model_dir),
        output_dir=str(out),
        steps=20,
        batch_size=32,
        mini_batch_size=32,
        ppo_epochs=4,
        max_new_tokens=8,
        learning_rate=1e-3,
        lr_schedule="constant",
        kl_coef=0.02,
        missing_eos_penalty=None,
        reward_normalization="none",
        forward_batch_size=32,
        save_every=0,
        save_final_model=False,
        plot=False,
        progress=False,
        resume=False,
        seed=0,
    )
    settings.update(overrides)
    return PPOConfig(**settings)
