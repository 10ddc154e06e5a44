"""PPOConfig: every knob of the PPO loop, with defaults from the RLHF literature.

Defaults follow Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences"),
Stiennon et al. 2020, Bai et al. 2022 (Constitutional AI) and Huang et al. 2024 ("The N+
implementation details of RLHF with PPO"). Sizes are per process: under `accelerate launch`
each process rolls out `batch_size` prompts, so the effective batch is batch_size x processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cai.model_names import ModelName
from cai.reward.spec import RemoteRewardSpec  # a running `cai reward serve`
from cai.train.monitor.config import MonitorConfig
from cai.train.push import HubRepoId
from cai.train.rewards import JudgeRewardSpec  # the judge reward: one spec for every trainer
from cai.train.tracking import ReportTo


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RewardModelSpec(_Strict):
    """A sequence-classification reward model (e.g. one trained by `cai train reward`)."""

    kind: Literal["model"] = "model"
    path: str
    """Local directory of an AutoModelForSequenceClassification with one output."""
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(1024, ge=8)


class TokenRewardSpec(_Strict):
    """Synthetic reward: the fraction of response tokens that are one of `tokens`.

    For checking that PPO learns at all (smoke and learning tests, new hardware).
    """

    kind: Literal["tokens"] = "tokens"
    tokens: list[str] = Field(min_length=1)
    """Strings that the policy tokenizer maps to single tokens (e.g. ["A"])."""


class PythonRewardSpec(_Strict):
    """Any callable `module:attribute` that follows the RewardFunction protocol."""

    kind: Literal["python"] = "python"
    target: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    kwargs: dict = Field(default_factory=dict)
    """Passed to the target when it is a class or factory (called once)."""


RewardSpec = Annotated[
    RewardModelSpec | TokenRewardSpec | PythonRewardSpec | JudgeRewardSpec | RemoteRewardSpec,
    Field(discriminator="kind"),
]


class PPOConfig(_Strict):
    """The whole PPO run. Loaded from YAML (`examples/ppo.yaml`) with CLI overrides."""

    # --- models and data -------------------------------------------------------------------
    model: ModelName
    """The starting policy (usually the SL-CAI model): a directory, an embedded model name or a
    hub id; also the default reference."""
    reference: ModelName | None = None
    """Frozen reference for the KL penalty; None = `model` as loaded."""
    value_model: Literal["shared", "separate"] = "shared"
    """"shared": a value head on the policy's trunk (cheap). "separate": its own critic trunk,
    initialised from `critic_init` (usually better on large models; twice the memory)."""
    critic_init: ModelName | None = None
    """Trunk for a separate critic; None = the policy (a reward model directory also works)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights of policy, critic and reference. float32 is exact; bfloat16 halves memory on GPUs
    (log-probs are still computed in float32)."""
    reward: RewardSpec | None = None
    prompts: str | None = None
    """JSONL / CSV / Parquet / save_to_disk directory of prompts (`cai.tables.iter_prompts`)."""
    prompt_column: str | None = None
    max_prompts: int | None = Field(None, ge=1)
    max_prompt_tokens: int = Field(512, ge=1)
    """Prompts longer than this are truncated from the left (the latest turns are kept)."""
    output_dir: str = "runs/ppo"

    # --- rollouts ---------------------------------------------------------------------------
    rollout_engine: Literal["transformers", "vllm"] = "transformers"
    """"vllm" colocates a vLLM engine and syncs the policy weights into it after every update
    (GPU machines); "transformers" uses model.generate (works everywhere)."""
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature; the training log-probs use the same temperature so the ratio is exact."""
    missing_eos_penalty: float | None = Field(1.0, ge=0.0)
    """Subtracted from the score of a response that hit max_new_tokens without ending
    (Huang et al. 2024); None = no penalty."""

    # --- batch shape ------------------------------------------------------------------------
    steps: int = Field(200, ge=1)
    """PPO iterations; each one is a rollout batch followed by `ppo_epochs` passes over it."""
    batch_size: int = Field(64, ge=1)
    """Prompts rolled out per step (per process)."""
    mini_batch_size: int = Field(16, ge=1)
    """Samples per optimiser step; batch_size must be a multiple."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches per optimiser step (mini_batch_size must be a multiple): the same
    update with less memory."""
    ppo_epochs: int = Field(4, ge=1)
    """Passes over each rollout batch (Schulman et al. 2017; Ziegler et al. 2019)."""
    forward_batch_size: int = Field(16, ge=1)
    """Samples per no-grad forward pass when computing old/reference log-probs and values."""

    # --- objective --------------------------------------------------------------------------
    kl_coef: float = Field(0.05, ge=0.0)
    """Initial coefficient beta of the per-token KL penalty -beta * (log pi - log pi_ref)."""
    adaptive_kl: bool = False
    """Adapt beta towards `target_kl` with the proportional controller of Ziegler et al. 2019."""
    target_kl: float = Field(6.0, gt=0.0)
    """Target KL (nats per sequence) for the adaptive controller."""
    kl_horizon: int = Field(10000, ge=1)
    """Controller horizon in samples (Ziegler et al. 2019)."""
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    """Discount; 1.0 because the reward arrives once at the end of a short episode."""
    lam: float = Field(0.95, ge=0.0, le=1.0)
    """GAE lambda."""
    cliprange: float = Field(0.2, gt=0.0)
    """PPO policy ratio clip epsilon."""
    cliprange_value: float = Field(0.2, gt=0.0)
    """Value prediction clip around the rollout-time value."""
    vf_coef: float = Field(0.1, ge=0.0)
    """Weight of the value loss in the total loss."""
    entropy_coef: float = Field(0.0, ge=0.0)
    """Entropy bonus weight (0 in most RLHF work; the KL penalty already regularises)."""
    ptx_coef: float = Field(0.0, ge=0.0)
    """PPO-ptx (Ouyang et al. 2022, "Training language models to follow instructions with human
    feedback", eq. 2: objective = RL objective + gamma * E_pretrain[log pi]): every optimiser
    step also minimises `ptx_coef` x the token-mean LM loss on `ptx_batch_size` rows of
    `ptx_dataset` (completion tokens only), so the policy keeps what SFT taught it. 0 = off."""
    ptx_dataset: str | None = None
    """SFT rows for ptx: the sft/ directory `cai revise` writes, or any messages or
    prompt/completion table (JSONL / CSV / Parquet / save_to_disk)."""
    ptx_split: str = "train"
    ptx_batch_size: int = Field(8, ge=1)
    """SFT rows per optimiser step (per process), split over its micro-batches."""
    ptx_max_completion_tokens: int = Field(512, ge=2)
    """Longer SFT completions are cut (keeping EOS); prompts follow max_prompt_tokens."""
    whiten_advantages: bool = True
    reward_normalization: Literal["none", "batch", "running"] = "running"
    """Scale scores before the KL penalty: "running" divides by a running std (and subtracts the
    running mean), "batch" whitens each batch, "none" uses raw scores."""
    reward_clip: float | None = Field(10.0, gt=0.0)
    """Clip normalised scores to [-reward_clip, reward_clip]; None = no clip."""

    # --- optimiser --------------------------------------------------------------------------
    learning_rate: float = Field(1.0e-6, gt=0.0)
    lr_schedule: Literal["constant", "linear"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    """Optimiser steps of linear warm-up."""
    adam_eps: float = Field(1.0e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float | None = Field(1.0, gt=0.0)

    # --- bookkeeping ------------------------------------------------------------------------
    seed: int = 0
    save_every: int = Field(50, ge=0)
    """Checkpoint every this many steps (0 = only at the end)."""
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool | str = True
    """True = continue from the latest checkpoint in output_dir if there is one; a path = that
    checkpoint; False = start over (refuses to overwrite an existing log)."""
    save_final_model: bool = True
    """Save the trained policy (transformers format) and tokenizer to output_dir/final."""
    plot: bool = True
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    progress: bool = True
    report_to: ReportTo = Field(default_factory=list)
    """Experiment trackers (tensorboard, wandb, trackio, mlflow) through accelerate, beside
    metrics.jsonl / .csv / .png; none by default, so nothing is sent anywhere unless asked."""
    push_to_hub: HubRepoId = None
    """A Hub repository (owner/name) to push the final policy (output_dir/final) and its card to."""
    private: bool = False
    """Create the pushed repository private."""
    monitor: MonitorConfig | None = None
    """Reward-hacking monitor (`cai.train.monitor`): every `monitor.every` steps, reward, judge
    win rate against the reference, length, boilerplate, refusals and KL on fixed prompts,
    to output_dir/logs/monitor.jsonl and monitor.png; warns or stops on drift. None = off."""

    @model_validator(mode="after")
    def _check_shapes(self) -> PPOConfig:
        if self.batch_size % self.mini_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size "
                f"({self.mini_batch_size}): every sample is used once per PPO epoch"
            )
        if self.ptx_coef and not self.ptx_dataset:
            raise ValueError("ptx_coef > 0 needs ptx_dataset (the SFT rows to mix in)")
        if self.mini_batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must be a multiple of "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps})"
            )
        return self

    @property
    def micro_batch_size(self) -> int:
        return self.mini_batch_size // self.gradient_accumulation_steps

    @property
    def optimizer_steps_per_step(self) -> int:
        return self.ppo_epochs * (self.batch_size // self.mini_batch_size)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)
