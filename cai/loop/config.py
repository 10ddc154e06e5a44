"""`cai loop` settings: one typed model for a whole cycle of RLAIF rounds.

The labelling settings (`sample`, `judge`, `preferences`, `constitution`) mean what they mean
in `cai run`; the trainer settings under `reward_model.train` and `policy_step.train` are the
fields of the `cai train` configs, checked against them when the file loads, so a misspelt key
fails before any round starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cai.backends import BackendSpec
from cai.config import ConfigError, load_config, resolve_beside
from cai.errors import did_you_mean
from cai.judge.compare import JudgeConfig
from cai.stages.preferences import PreferenceConfig
from cai.stages.sample import SampleConfig
from cai.train.ppo.config import PPOConfig
from cai.train.preference import DPOTrainConfig, OnlineTrainConfig
from cai.train.push import HubRepoId
from cai.train.reward import RewardTrainConfig
from cai.train.tracking import ReportTo

STATE_KEYS_FREE = ("name", "output_dir", "rounds", "stop", "report_to", "push_to_hub", "private")
"""Settings a rerun may change: they decide how far the loop goes, not what a round makes."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class LoopPrompts(_Strict):
    """The prompt pool: a fresh slice of `per_round` prompts each round, or the same pool."""

    path: str
    column: str | None = None
    per_round: int | Literal["same"] = "same"

    @field_validator("per_round")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("per_round is a number of prompts (>= 1) or 'same'")
        return value


class LoopData(_Strict):
    """How rounds' preference rows are combined into each round's training set.

    Weights become row copies (TRL's DPOTrainer has no per-row weight and the reward trainer
    weighs rows by source only): a round of weight w gets round(w / w_min) copies of each row,
    where w_min is the smallest weight kept.
    """

    mix: Literal["all", "window", "decay"] = "all"
    window: int = Field(2, ge=1, description="mix: window - the last k rounds")
    decay: float = Field(0.5, gt=0.0, le=1.0, description="mix: decay - weight per round of age")
    min_weight: float = Field(
        0.1, gt=0.0, le=1.0, description="mix: decay - rounds weighing less are left out"
    )


class RewardModelSettings(_Strict):
    """The reward model refreshed each round (warm start: from the previous round's)."""

    model: str = Field(description="sequence-classification model for round 1")
    warm_start: bool = True
    train: dict[str, Any] = Field(
        default_factory=dict, description="other `cai train reward` settings (max_steps, ...)"
    )

    @model_validator(mode="after")
    def _known(self) -> RewardModelSettings:
        _check_trainer(RewardTrainConfig, self.train, "reward_model.train", _TRAIN_OWN)
        return self


class PolicyStep(_Strict):
    """How round r's policy becomes policy r+1."""

    method: Literal["ppo", "dpo", "grpo"] = "dpo"
    reward: Literal["judge", "reward_model"] = Field(
        "reward_model", description="what ppo / grpo optimise (dpo learns from the pairs)"
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="other settings of the trainer (max_steps, beta, ...)"
    )

    @model_validator(mode="after")
    def _known(self) -> PolicyStep:
        _check_trainer(
            trainer_config_class(self.method), self.train, "policy_step.train", _TRAIN_OWN
        )
        return self


class LoopEval(_Strict):
    """The judged win rate that ends each round (both answer orders, bootstrap interval)."""

    prompts: str = Field(description="held-out prompts, never sampled for training")
    column: str | None = None
    limit: int | None = Field(None, ge=1)
    max_tokens: int = Field(64, ge=1)
    tie_margin: float = Field(0.0, ge=0.0, lt=0.5)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    bootstrap_resamples: int = Field(2000, ge=1)
    backend: dict[str, Any] = Field(
        default_factory=dict,
        description="settings replacing the policy's for eval answers (e.g. kind: transformers)",
    )


class LoopStop(_Strict):
    patience: int | None = Field(
        None,
        ge=1,
        description="stop after this many rounds in a row whose gain over the previous policy "
        "has a bootstrap interval that includes zero",
    )


class LoopConfig(_Strict):
    """A cycle of rounds: sample from policy r, judge, train, measure, repeat."""

    name: str = "cai-loop"
    output_dir: str = "runs/loop"
    rounds: int = Field(3, ge=1)
    prompts: LoopPrompts
    constitution: str = "default"
    templates: str | None = None
    policy: BackendSpec = Field(description="the starting policy (kind vllm or transformers)")
    judge_backend: BackendSpec
    sample: SampleConfig = Field(default_factory=SampleConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    preferences: PreferenceConfig = Field(default_factory=PreferenceConfig)
    chunk_size: int = Field(64, ge=1)
    human_labels: str | None = Field(
        None, description="a `cai label` database (.db) or a human-labels file (`cai mix` rules)"
    )
    data: LoopData = Field(default_factory=LoopData)
    reward_model: RewardModelSettings | None = None
    policy_step: PolicyStep = Field(default_factory=PolicyStep)
    eval: LoopEval
    stop: LoopStop = Field(default_factory=LoopStop)
    report_to: ReportTo = Field(
        default_factory=list,
        description="experiment trackers for the loop's one run (tensorboard, wandb, trackio, "
        "mlflow): a round axis, each round's win rates with intervals and stage times",
    )
    push_to_hub: HubRepoId = Field(
        None, description="a Hub repository for the final policy and its card (owner/name)"
    )
    private: bool = Field(False, description="create the pushed repository private")

    @model_validator(mode="after")
    def _consistent(self) -> LoopConfig:
        if self.policy.kind not in ("vllm", "transformers"):
            raise ValueError(
                f"policy.kind {self.policy.kind!r}: the loop trains the policy, so it must be a "
                "local model sampled with kind vllm or transformers"
            )
        step = self.policy_step
        if step.method != "dpo" and step.reward == "reward_model" and self.reward_model is None:
            raise ValueError(
                f"policy_step.method {step.method} with reward: reward_model needs a "
                "`reward_model:` section (or set policy_step.reward: judge)"
            )
        return self


_TRAIN_OWN = ("model", "output_dir", "train_data", "prompts", "resume", "reward", "reward_models")
"""Trainer settings the loop sets itself each round."""


def trainer_config_class(method: str) -> type[BaseModel]:
    """The `cai train` config a policy-step method is run with."""
    if method == "ppo":
        return PPOConfig

    return DPOTrainConfig if method == "dpo" else OnlineTrainConfig


def _check_trainer(model: type[BaseModel], settings: dict[str, Any], where: str, own) -> None:
    """Unknown or loop-owned keys fail at load time, naming the key and the known ones."""
    known = set(model.model_fields)
    for key in settings:
        if key in own:
            raise ValueError(f"{where}.{key} is set by the loop each round; remove it")
        if key not in known:
            hint = did_you_mean(key, sorted(known))
            raise ValueError(f"{where}.{key} is not a setting of {model.__name__}. {hint}".strip())


def _local(value: str | None, base: Path | None) -> str | None:
    """A path beside the YAML (or from the working directory) made absolute, so the
    fingerprint is the same whichever directory the loop is resumed from; names stay names."""
    value = resolve_beside(value, base)
    if value is None or not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().resolve())


def load_loop_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> LoopConfig:
    """YAML < typed options < `--set`; relative input paths are looked up beside the YAML."""
    config = load_config(LoopConfig, path, options, overrides or [])
    base = Path(path).resolve().parent if path is not None else None
    config.prompts.path = _local(config.prompts.path, base) or config.prompts.path
    config.eval.prompts = _local(config.eval.prompts, base) or config.eval.prompts
    config.human_labels = _local(config.human_labels, base)
    config.templates = _local(config.templates, base)
    if config.constitution.endswith((".yaml", ".yml")):
        config.constitution = _local(config.constitution, base) or config.constitution
    config.policy = config.policy.model_copy(update={"model": _local(config.policy.model, base)})
    if config.judge_backend.kind in ("vllm", "transformers"):
        model = _local(config.judge_backend.model, base)
        config.judge_backend = config.judge_backend.model_copy(update={"model": model})
    if config.reward_model is not None:
        config.reward_model.model = (
            _local(config.reward_model.model, base) or config.reward_model.model
        )
    return config


def fingerprint(config: LoopConfig) -> dict[str, Any]:
    """What a round's results depend on: everything but the keys a rerun may change."""
    return config.model_dump(mode="json", exclude=set(STATE_KEYS_FREE))


__all__ = [
    "ConfigError",
    "LoopConfig",
    "LoopData",
    "LoopEval",
    "LoopPrompts",
    "LoopStop",
    "PolicyStep",
    "RewardModelSettings",
    "fingerprint",
    "load_loop_config",
    "trainer_config_class",
]
