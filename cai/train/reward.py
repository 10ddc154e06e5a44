"""Soft-label reward model training on TRL's RewardTrainer.

AI feedback comes as a probability that `chosen` beats `rejected`, not a hard label. The
Constitutional AI and RLAIF papers found training the preference model against that
probability works better than thresholding it, so the loss here is the binary cross-entropy
of sigmoid(r_chosen - r_rejected) against `prob_chosen` (a hard label is the special case
prob_chosen = 1). Rows can be weighted by their `source` (AI vs human), so a mixed dataset
from `cai mix` trains as is. Everything else (tokenisation, checkpoints, resume,
`accelerate launch`) is TRL's and transformers' own machinery.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Literal

from pydantic import Field

from cai.logs import quiet_trainer
from cai.paths import check_run_paths
from cai.records import PROB_COLUMN, ROW_COLUMN, WEIGHT_COLUMN
from cai.tables import InputFormatError, load_table
from cai.train.cards import CardInputs
from cai.train.config import resolve_resume, save_config
from cai.train.distributed import (
    debug_data_log_enabled,
    one_writer,
    prepare_launch,
    trainer_debug_callback,
)
from cai.train.preference import (
    RunConfig,
    TrainResult,
    final_metrics,
    preference_data,
    require_columns,
    save_trained_model,
    write_card,
)
from cai.train.push import push_if_asked
from cai.train.reward_scorer import RewardModelScorer


class RewardTrainConfig(RunConfig):
    """`cai train reward`: a cai preference dataset (AI, human or mixed) in, a reward model out."""

    train_data: str
    eval_data: str | None = None
    human_eval_data: str | None = None
    """A held-out human-labelled preference set: accuracy on it is reported and saved."""
    labels: Literal["soft", "hard"] = "soft"
    """soft: BCE against prob_chosen; hard: prob_chosen rounded to 0 / 1 (0.5 stays 0.5)."""
    source_weights: dict[str, float] = Field(default_factory=lambda: {"ai": 1.0, "human": 1.0})
    max_length: int | None = 1024
    center_rewards_coefficient: float | None = None
    learning_rate: float = Field(1e-4, gt=0)


def prepare_rows(dataset, labels: str, source_weights: dict[str, float], where: str):
    """Add the target and weight columns the soft loss reads; refuse rows it cannot use."""
    require_columns(dataset, ("chosen", "rejected"), where, "reward model training")
    columns = dataset.column_names
    if "margin" in columns:
        dataset = dataset.remove_columns("margin")  # TRL would add it to the loss; we use prob
    n = len(dataset)
    probs = list(dataset[PROB_COLUMN]) if PROB_COLUMN in columns else [1.0] * n
    sources = list(dataset["source"]) if "source" in columns else ["ai"] * n
    bad_prob = [
        i for i, p in enumerate(probs) if p is None or not (0.0 <= float(p) <= 1.0) or math.isnan(p)
    ]
    if bad_prob:
        i = bad_prob[0]
        raise InputFormatError(
            f"{where}: {len(bad_prob)} row(s) have no valid {PROB_COLUMN} in [0, 1] (first: row "
            f"{i}, value {probs[i]!r}). Drop them or re-export the preferences."
        )
    unknown = sorted({str(s) for s in sources} - set(source_weights))
    if unknown:
        raise InputFormatError(
            f"{where}: source(s) {', '.join(unknown)} have no weight in source_weights "
            f"({source_weights}). Add them, e.g. --source-weight {unknown[0]}=1.0."
        )
    if labels == "hard":
        probs = [1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5 for p in probs]
    weights = [float(source_weights[str(s)]) for s in sources]
    for name in (PROB_COLUMN, WEIGHT_COLUMN):
        if name in dataset.column_names:
            dataset = dataset.remove_columns(name)
    dataset = dataset.add_column(PROB_COLUMN, [float(p) for p in probs])
    dataset = dataset.add_column(WEIGHT_COLUMN, weights)
    return dataset


def _source_counts(dataset) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in dataset["source"] if "source" in dataset.column_names else ["ai"] * len(dataset):
        counts[str(s)] += 1
    return dict(counts)


def preference_accuracy(scorer, dataset) -> dict[str, float]:
    """Accuracy (r_chosen > r_rejected where the label decides) and BCE on a preference set."""
    rows = list(dataset)
    prompts = [r.get("prompt") or [] for r in rows]
    chosen = [list(p) + list(r["chosen"]) for p, r in zip(prompts, rows, strict=True)]
    rejected = [list(p) + list(r["rejected"]) for p, r in zip(prompts, rows, strict=True)]
    rc = scorer.score(chosen)
    rr = scorer.score(rejected)
    correct = decided = 0
    bce = 0.0
    for a, b, row in zip(rc, rr, rows, strict=True):
        p = 1.0 if row.get(PROB_COLUMN) is None else float(row[PROB_COLUMN])
        d = a - b
        bce += -(p * _log_sigmoid(d) + (1 - p) * _log_sigmoid(-d))
        if p != 0.5:
            decided += 1
            correct += int((d > 0) == (p > 0.5))
    return {
        "accuracy": correct / decided if decided else float("nan"),
        "bce": bce / len(rows),
        "n": float(len(rows)),
    }


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _whole_model(trainer, saved_dir: str):
    """The trained model with all its weights, for scoring on the main process alone: the
    live one, or under FSDP / DeepSpeed (whose ranks hold shards) the one just saved."""
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(
        trainer, "is_deepspeed_enabled", False
    ):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(saved_dir)
        return model.to(trainer.accelerator.device).eval()
    return trainer.accelerator.unwrap_model(trainer.model)


def _datasets(config: RewardTrainConfig):
    """The raw and prepared training rows, the prepared eval rows and the human held-out set
    (None where not configured)."""
    train_raw = load_table(config.train_data, allow_empty=False)
    train = prepare_rows(train_raw, config.labels, config.source_weights, config.train_data)
    if debug_data_log_enabled():
        train = train.add_column(ROW_COLUMN, list(range(len(train))))
    evald = None
    if config.eval_data:
        eval_raw = load_table(config.eval_data, allow_empty=False)
        evald = prepare_rows(eval_raw, config.labels, config.source_weights, config.eval_data)
    human = None
    if config.human_eval_data:
        human = load_table(config.human_eval_data, allow_empty=False)
        require_columns(human, ("chosen", "rejected"), config.human_eval_data, "evaluation")
    return train_raw, train, evald, human


def _trainer_args(config: RewardTrainConfig, evaluates: bool):
    from trl import RewardConfig

    kwargs = config.trl_kwargs()
    kwargs.setdefault("max_length", config.max_length)
    kwargs.setdefault("center_rewards_coefficient", config.center_rewards_coefficient)
    if evaluates:
        kwargs.setdefault("eval_strategy", "steps")
        kwargs.setdefault("eval_steps", config.save_steps)
    return RewardConfig(**kwargs)


def _metrics(trainer, config: RewardTrainConfig, evaluates: bool, human) -> dict[str, float]:
    """The final training metrics, the eval set's, and accuracy on the human held-out set
    (scored on the main process)."""
    metrics = final_metrics(trainer)
    if evaluates:
        metrics.update(trainer.evaluate())
    if human is not None and trainer.is_world_process_zero():
        scorer = RewardModelScorer(
            _whole_model(trainer, config.output_dir),
            trainer.processing_class,
            batch_size=trainer.args.per_device_eval_batch_size,
        )
        for key, value in preference_accuracy(scorer, human).items():
            metrics[f"human_{key}"] = value
    return metrics


def _card(trainer, config: RewardTrainConfig, train_raw, resume, metrics) -> None:
    inputs = CardInputs(
        method="reward model: weighted BCE(sigmoid(r_chosen - r_rejected), prob_chosen) "
        "(TRL RewardTrainer)",
        settings=("labels", "source_weights", "max_length", "center_rewards_coefficient"),
        data=preference_data(config.train_data),
        notes={"rows_by_source": _source_counts(train_raw)},
        tags=["reward-model", "trl"],
    )
    write_card(
        config,
        "Reward model",
        inputs,
        metrics,
        {
            "base_model": config.model,
            "train_data": config.train_data,
            "rows_by_source": _source_counts(train_raw),
            "labels": config.labels,
            "loss": "weighted BCE(sigmoid(r_chosen - r_rejected), prob_chosen)",
            "source_weights": config.source_weights,
            "human_eval_data": config.human_eval_data,
            "global_step": trainer.state.global_step,
            "processes": trainer.args.world_size,
            "resumed_from": resume,
            "config": config.model_dump(),
        },
    )


def train_reward_model(config: RewardTrainConfig) -> TrainResult:
    """Train, evaluate on the held-out human set if given, save model + tokenizer + card.

    Under N processes each trains on its shard of every batch; the main process alone writes
    the config, checkpoints, model, card and held-out metrics (see `cai.train.distributed`).
    """
    check_run_paths(config, replaces=True)  # its data and model survive the run
    prepare_launch()
    train_raw, train, evald, human = _datasets(config)
    args = _trainer_args(config, evaluates=evald is not None)
    resume = resolve_resume(config.resume, config.output_dir)
    with one_writer(config.output_dir, args.world_size, args.process_index == 0):
        from cai.train.reward_trainer import SoftLabelRewardTrainer

        trainer = SoftLabelRewardTrainer(
            model=config.model,
            args=args,
            train_dataset=train,
            eval_dataset=evald,
            peft_config=config.peft_config(task_type="SEQ_CLS"),
        )
        callback = trainer_debug_callback(args.process_index, config.output_dir)
        if callback is not None:
            trainer.add_callback(callback)
        quiet_trainer(trainer)
        if trainer.is_world_process_zero():
            save_config(config, config.output_dir)
        trainer.train(resume_from_checkpoint=resume)
        save_trained_model(trainer, config)
        metrics = _metrics(trainer, config, evald is not None, human)
        if trainer.is_world_process_zero():
            _card(trainer, config, train_raw, resume, metrics)
            push_if_asked(config.output_dir, config.push_to_hub, config.private)
        trainer.accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=str(Path(config.output_dir)),
        global_step=trainer.state.global_step,
        resumed_from=resume if isinstance(resume, str) else None,
        metrics=metrics,
    )
