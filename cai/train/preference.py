"""Thin DPO / GRPO / RLOO wrappers over TRL, plus the run plumbing every cai trainer shares.

TRL does the optimisation; this module only turns a cai config (pydantic, loaded from YAML
with CLI overrides) into TRL's config, loads cai datasets as they are on disk, resolves
resume, and writes a small card next to the model. Nothing here picks a device: the same
code runs on a CPU, one GPU, or several under `accelerate launch`.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cai.logs import quiet_trainer
from cai.paths import check_run_paths
from cai.reward.spec import RemoteRewardSpec
from cai.tables import InputFormatError, dataset_from_rows, iter_prompts, load_table
from cai.train.cards import (
    CardInputs,
    DataFacts,
    build_card,
    constitution_facts,
    dataset_facts,
    public_model_name,
    write_model_card,
)
from cai.train.config import (
    TrainCommon,
    precision_flags,
    resolve_resume,
    save_config,
)
from cai.train.distributed import one_writer, prepare_launch, trainer_debug_callback
from cai.train.distributed import save_trained_model as save_once
from cai.train.lora import lora_config
from cai.train.monitor.config import MonitorConfig
from cai.train.push import push_if_asked
from cai.train.rewards import JudgeRewardSpec, build_judge_reward, judge_reward
from cai.train.tracking import trl_report_to

# --------------------------------------------------------------------------------------------
# Shared run settings
# --------------------------------------------------------------------------------------------


class RunConfig(TrainCommon):
    """The shared trainer settings plus `trl`: any other TRL config field, passed as is."""

    trl: dict[str, Any] = Field(default_factory=dict)
    """Extra fields of the TRL config class (TRL validates them), e.g. {eval_steps: 50}."""

    def trl_kwargs(self, evaluate: bool = False, **defaults: Any) -> dict[str, Any]:
        """Arguments for the TRL config dataclass: shared fields, then `trl` overrides, then
        the trainer's own `defaults` where `trl` does not set them; `evaluate` adds an
        evaluation every `save_steps`."""
        kwargs: dict[str, Any] = {
            "output_dir": self.output_dir,
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "warmup_steps": self.warmup_ratio,
            "logging_steps": self.logging_steps,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "seed": self.seed,
            "gradient_checkpointing": self.gradient_checkpointing,
            "report_to": trl_report_to(self.report_to),
            "run_name": Path(self.output_dir).name,
            **precision_flags(self.dtype),
        }
        kwargs.update(self.trl)
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        if evaluate:
            kwargs.setdefault("eval_strategy", "steps")
            kwargs.setdefault("eval_steps", self.save_steps)
        return kwargs

    def peft_config(self, task_type: str = "CAUSAL_LM"):
        """A peft LoraConfig when `lora.enabled`, else None (SEQ_CLS also trains the head)."""
        return lora_config(self.lora, task_type)


def require_columns(dataset, columns: tuple[str, ...], where: str, purpose: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise InputFormatError(
            f"missing column(s) {', '.join(missing)} needed for {purpose} "
            f"(columns: {', '.join(dataset.column_names)})",
            file=where,
            fix="cai preference datasets from `cai judge` / `cai human` have them.",
        )


def load_prompt_dataset(path: str | Path, column: str | None = None, limit: int | None = None):
    """Prompts for on-policy training (GRPO/RLOO) as a `prompt` column of chat messages,
    every row checked (`cai.tables.iter_prompts`) before any model loads."""

    rows = [
        {"prompt": record.prompt, "prompt_id": record.prompt_id}
        for record in iter_prompts(path, column=column, limit=limit)
    ]
    if not rows:
        raise InputFormatError("no prompts to train on (limit is 0)", file=path)
    return dataset_from_rows(rows)


def write_card(
    config: TrainCommon,
    title: str,
    inputs: CardInputs,
    metrics: dict[str, float],
    facts: dict[str, Any],
) -> Path:
    """README.md (the model card, `cai.train.cards`) and cai_training.json (the facts) in
    the output directory."""
    card = build_card(
        config,
        title,
        inputs,
        metrics,
        steps=facts.get("global_step"),
        processes=facts.get("processes", 1),
        resumed_from=facts.get("resumed_from"),
    )
    return write_model_card(config.output_dir, card, facts)


def preference_data(path: str | None, kind: str = "preference pairs") -> list[DataFacts]:
    """The card's facts of a training dataset (none when there is no path)."""
    return [dataset_facts(path, kind)] if path else []


def save_trained_model(trainer, config: TrainCommon) -> None:
    """Save model + tokenizer once (main process); a LoRA adapter is merged first when
    `lora.merge` asks for it. Every process must call it (the save is collective)."""

    merge = bool(config.lora.enabled and getattr(config.lora, "merge", False))
    save_once(trainer, config.output_dir, merge)


def final_metrics(trainer) -> dict[str, float]:
    """The last logged value of every numeric metric of a finished run."""
    last: dict[str, float] = {}
    for entry in trainer.state.log_history:
        last.update({k: v for k, v in entry.items() if isinstance(v, int | float)})
    return last


class TrainResult(BaseModel):
    """What a finished run reports back to the CLI."""

    output_dir: str
    global_step: int
    resumed_from: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------------


class DPOTrainConfig(RunConfig):
    """DPO on a cai preference dataset (used as is: prompt / chosen / rejected)."""

    train_data: str
    eval_data: str | None = None
    beta: float = 0.1
    loss_type: str = "sigmoid"
    max_length: int | None = 1024
    learning_rate: float = Field(1e-6, gt=0)


def train_dpo(config: DPOTrainConfig) -> TrainResult:
    """Run TRL's DPOTrainer; extra provenance columns of cai rows are dropped by TRL itself."""
    check_run_paths(config, replaces=True)  # its data and model survive the run
    from trl import DPOConfig, DPOTrainer

    prepare_launch()
    train = load_table(config.train_data, allow_empty=False)
    require_columns(train, ("prompt", "chosen", "rejected"), config.train_data, "DPO")
    evald = load_table(config.eval_data, allow_empty=False) if config.eval_data else None
    kwargs = config.trl_kwargs(
        evaluate=evald is not None,
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
    )
    trainer = DPOTrainer(
        model=config.model,
        args=DPOConfig(**kwargs),
        train_dataset=train,
        eval_dataset=evald,
        peft_config=config.peft_config(),
    )
    inputs = CardInputs(
        method="DPO (TRL DPOTrainer)",
        settings=("beta", "loss_type", "max_length"),
        data=preference_data(config.train_data),
        tags=["dpo", "trl"],
    )
    return run_trainer(trainer, config, "DPO policy", {"train_data": config.train_data}, inputs)


# --------------------------------------------------------------------------------------------
# GRPO / RLOO
# --------------------------------------------------------------------------------------------


class OnlineTrainConfig(RunConfig):
    """GRPO / RLOO: prompts in, completions sampled, scored by reward models and/or the judge."""

    prompts: str
    prompt_column: str | None = None
    limit: int | None = None
    reward_models: list[str] = Field(default_factory=list)
    """Sequence-classification reward model directories (e.g. from `cai train reward`)."""
    judge: JudgeRewardSpec | None = None
    """The constitutional judge scoring each completion (assess) or against a reference."""
    remote_judge: RemoteRewardSpec | None = None
    """A running `cai reward serve` (`{url: ..., mode: rank | score | compare}`): rank mode
    ranks each prompt's group of completions in one judgment, the group reward GRPO wants."""
    reward_weights: list[float] | None = None
    """One weight per reward (reward models first, then the judge, then the remote judge);
    None = all 1."""
    num_generations: int = 4
    max_completion_length: int = 128
    temperature: float = 1.0
    beta: float = 0.0
    learning_rate: float = Field(1e-6, gt=0)
    monitor: MonitorConfig | None = None
    """Reward-hacking monitor (`cai.train.monitor`): output_dir/logs/monitor.jsonl, monitor.png."""


OnlineAlgorithm = Literal["grpo", "rloo"]


def _online_reward_funcs(
    config: OnlineTrainConfig, judge_backend=None, owned: ExitStack | None = None
) -> list:
    """TRL's reward_funcs; a judge backend built here from its spec closes with `owned`."""

    funcs: list = []
    for path in config.reward_models:
        if not Path(path).is_dir():
            raise InputFormatError(
                f"reward model {path}: not a directory. Train one with `cai train reward` "
                "or pass a local sequence-classification model directory."
            )
        funcs.append(path)  # TRL loads it and places it on the right device itself
    if config.judge is not None:
        if owned is None:  # the caller's backend, or one the reward keeps
            funcs.append(build_judge_reward(config.judge, backend=judge_backend))
        else:
            funcs.append(owned.enter_context(judge_reward(config.judge, judge_backend)))
    if config.remote_judge is not None:
        funcs.append(config.remote_judge.client())
    if not funcs:
        raise InputFormatError(
            "no reward: set `reward_models` (a list of reward model directories), `judge` "
            "(the constitutional judge) and/or `remote_judge` (a running `cai reward serve`) "
            "in the config."
        )
    if config.reward_weights is not None and len(config.reward_weights) != len(funcs):
        raise InputFormatError(
            f"reward_weights has {len(config.reward_weights)} values but there are {len(funcs)} "
            "rewards (reward models first, then the judge, then the remote judge)."
        )
    return funcs


def train_online(
    algorithm: OnlineAlgorithm, config: OnlineTrainConfig, judge_backend=None
) -> TrainResult:
    """Run TRL's GRPOTrainer or RLOOTrainer. `judge_backend` overrides the judge's BackendSpec."""
    check_run_paths(config, replaces=True)  # its data and model survive the run
    if algorithm == "grpo":
        from trl import GRPOConfig as TRLConfig
        from trl import GRPOTrainer as TRLTrainer
    elif algorithm == "rloo":
        from trl import RLOOConfig as TRLConfig
        from trl import RLOOTrainer as TRLTrainer
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; use grpo or rloo.")

    prepare_launch()

    dataset = load_prompt_dataset(config.prompts, config.prompt_column, config.limit)
    owned = ExitStack()
    funcs = _online_reward_funcs(config, judge_backend, owned)
    kwargs = config.trl_kwargs(
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
    )
    if config.reward_weights is not None:
        kwargs.setdefault("reward_weights", config.reward_weights)
    trainer = TRLTrainer(
        model=config.model,
        reward_funcs=funcs,
        args=TRLConfig(**kwargs),
        train_dataset=dataset,
        peft_config=config.peft_config(),
    )
    if config.monitor is not None:
        from cai.train.monitor.callback import MonitorCallback  # imports transformers

        trainer.add_callback(
            MonitorCallback(
                config.monitor,
                trainer,
                config.model,
                config.max_completion_length,
                config.temperature,
                judge_backend,
            )
        )
    facts = {
        "prompts": config.prompts,
        "reward_models": config.reward_models,
        "judge": config.judge.model_dump() if config.judge else None,
        "remote_judge": config.remote_judge.model_dump() if config.remote_judge else None,
    }
    inputs = online_card_inputs(config, algorithm)
    with owned:  # the judge backend built for this run closes when training ends
        return run_trainer(trainer, config, f"{algorithm.upper()} policy", facts, inputs)


def judge_model_name(judge: JudgeRewardSpec | None) -> str | None:
    """The judge's public model name (None without a judge or a model)."""
    model = getattr(judge.backend, "model", None) if judge and judge.backend else None
    return public_model_name(model) if model else None


def online_card_inputs(config: OnlineTrainConfig, algorithm: str) -> CardInputs:
    """GRPO / RLOO card facts: prompts, reward models and the judge with its constitution."""
    judge = config.judge
    return CardInputs(
        method=f"{algorithm.upper()} (TRL {algorithm.upper()}Trainer)",
        settings=("num_generations", "max_completion_length", "temperature", "beta"),
        data=preference_data(config.prompts, "prompts"),
        judge_model=judge_model_name(judge),
        constitution=constitution_facts(judge.constitution) if judge else None,
        reward_models=[public_model_name(path) for path in config.reward_models],
        tags=[algorithm, "trl", "rlaif"],
    )


def train_grpo(config: OnlineTrainConfig, judge_backend=None) -> TrainResult:
    return train_online("grpo", config, judge_backend)


# --------------------------------------------------------------------------------------------


def run_trainer(
    trainer, config: RunConfig, title: str, facts: dict[str, Any], inputs: CardInputs
) -> TrainResult:
    """Train (resuming if asked); the main process alone saves model + tokenizer + card,
    pushes them when `push_to_hub` asks, and holds the output directory
    (`cai.train.distributed`); the others wait for it at the end."""

    resume = resolve_resume(config.resume, config.output_dir)
    main = trainer.is_world_process_zero()
    with one_writer(config.output_dir, trainer.args.world_size, main):
        callback = trainer_debug_callback(trainer.args.process_index, config.output_dir)
        if callback is not None:
            trainer.add_callback(callback)
        quiet_trainer(trainer)
        if main:
            save_config(config, config.output_dir)
        trainer.train(resume_from_checkpoint=resume)
        save_trained_model(trainer, config)
        metrics = final_metrics(trainer)
        if main:
            facts = {
                "base_model": config.model,
                **facts,
                "global_step": trainer.state.global_step,
                "processes": trainer.args.world_size,
                "resumed_from": resume,
                "config": config.model_dump(),
            }
            write_card(config, title, inputs, metrics, facts)
            push_if_asked(config.output_dir, config.push_to_hub, config.private)
        trainer.accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=config.output_dir,
        global_step=trainer.state.global_step,
        resumed_from=resume if isinstance(resume, str) else None,
        metrics=metrics,
    )
