"""MonitorConfig: what the reward-hacking monitor samples, measures and acts on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.train.rewards import JudgeRewardSpec

StopReason = Literal["reward_judge_divergence", "length", "boilerplate"]

#: Lower-cased phrases that mark a refusal (apostrophes normalised to "'"); a response
#: containing any of them counts as refusing. Short on purpose: a rate, not a classifier.
DEFAULT_REFUSAL_MARKERS = [
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "as an ai",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
]


class MonitorConfig(BaseModel):
    """The `monitor:` section of a PPO / GRPO / RLOO config.

    A reward model can be gamed: the reward climbs while what it stood for (the constitution's
    judgment) falls, responses grow or fill with stock phrases (Gao et al. 2023, "Scaling Laws
    for Reward Model Overoptimization"; Singhal et al. 2023, "A Long Way to Go"). The monitor
    watches exactly those signs on fixed prompts, so curves from different steps compare.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: str
    """Evaluation prompts (JSONL / CSV / Parquet / save_to_disk dir; `cai.tables.iter_prompts`)."""
    prompt_column: str | None = None
    limit: int | None = Field(32, ge=1)
    """Use the first `limit` prompts (None = all)."""
    every: int = Field(10, ge=1)
    """Check every this many training steps (optimiser steps for GRPO / RLOO)."""
    judge: JudgeRewardSpec | None = None
    """The constitutional judge for the win rate (its mode is ignored: the monitor always
    compares pairwise, both answer orders); None = no win rate and no divergence rule."""
    max_new_tokens: int | None = Field(None, ge=1)
    """Response length cap for monitor samples; None = the trainer's."""
    temperature: float | None = Field(None, gt=0.0)
    """Sampling temperature for monitor samples; None = the trainer's."""
    seed: int = 0
    """Seed of the monitor samples: the same at every check, so only the weights change."""
    batch_size: int = Field(16, ge=1)
    """Prompts generated and scored together."""
    window: int = Field(4, ge=2)
    """Checks the trend rules look back over (the least-squares slope needs two)."""
    min_reward_slope: float = Field(0.0, ge=0.0)
    """The reward "rises" when its least-squares slope per check exceeds this."""
    min_win_rate_slope: float = Field(0.01, ge=0.0)
    """The win rate "falls" when its slope per check is below minus this (0.01 = one
    percentage point per check)."""
    max_length_ratio: float = Field(2.0, gt=0.0)
    """Warn when mean response tokens / the reference's mean exceed this."""
    max_boilerplate: float = Field(0.5, gt=0.0, le=1.0)
    """Warn when the boilerplate share (`metrics.boilerplate`) exceeds this."""
    boilerplate_ngram: int = Field(4, ge=1)
    """Word n-gram size of the boilerplate measure."""
    refusal_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_MARKERS))
    stop_on: list[StopReason] = Field(default_factory=list)
    """Warnings that stop the run (after a checkpoint, so it resumes)."""
