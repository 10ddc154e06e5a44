"""Trainers: SFT, reward model, PPO, DPO / GRPO / RLOO, each driven by a YAML config."""
