"""A thin KTO wrapper over TRL: single answers marked desirable or undesirable.

KTO (Ethayarajh et al. 2024) needs no pairs, so thumbs up/down feedback trains a policy as
is. It reads unpaired rows (prompt / completion / label, as `cai import-human` writes them
from thumbs) or a preference dataset, which it splits into single answers first
(`cai.train.unpaired`). Settings, resume, output layout and the card are DPO's
(`cai.train.preference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cai.config import ConfigError
from cai.paths import check_run_paths
from cai.tables import InputFormatError, dataset_from_rows, load_table
from cai.train.cards import CardInputs
from cai.train.config import resolve_resume
from cai.train.distributed import prepare_launch
from cai.train.preference import RunConfig, TrainResult, preference_data, run_trainer
from cai.train.unpaired import (
    UNPAIRED_COLUMNS,
    alternate_labels,
    checked_unpaired,
    label_counts,
    unpair_preferences,
)


class KTOTrainConfig(RunConfig):
    """KTO on unpaired rows (prompt / completion / label) or on preference pairs."""

    train_data: str
    eval_data: str | None = None
    beta: float = Field(0.1, gt=0)
    loss_type: Literal["kto", "apo_zero_unpaired"] = "kto"
    desirable_weight: float = Field(1.0, gt=0)
    undesirable_weight: float = Field(1.0, gt=0)
    """Weights of the two losses; set them so weight x count is about even when the data
    holds many more answers of one kind (TRL logs a recommended range)."""
    min_confidence: float = Field(0.0, ge=0.0, lt=0.5)
    """Preference pairs only: drop pairs with |prob_chosen - 0.5| below this (ties always)."""
    max_length: int | None = 1024
    learning_rate: float = Field(1e-6, gt=0)


def load_kto_dataset(path: str | Path, min_confidence: float = 0.0):
    """(dataset of unpaired rows ordered for KTO, facts for the card) from unpaired rows or
    from a preference dataset (split into answers); errors name the file and row."""

    table = load_table(path, allow_empty=False)
    columns = set(table.column_names)
    facts: dict[str, Any] = {}
    if {"chosen", "rejected"} <= columns:
        rows, report = unpair_preferences(table, min_confidence, where=str(path))
        facts["unpaired_from_pairs"] = report.model_dump()
        if not rows:
            raise InputFormatError(
                f"none of the {report.n_pairs} pairs gives a label "
                f"(dropped: {report.pairs_dropped}, conflicting answers: "
                f"{report.answers_conflicting})",
                file=path,
                fix="Lower min_confidence, or train on pairs that are not ties.",
            )
    elif set(UNPAIRED_COLUMNS) <= columns:
        rows = checked_unpaired(table, str(path))
    else:
        raise InputFormatError(
            f"neither unpaired rows nor preference pairs (columns: {', '.join(sorted(columns))})",
            file=path,
            fix="KTO reads prompt / completion / label rows (`cai import-human` of thumbs "
            "up/down writes them) or prompt / chosen / rejected pairs.",
        )
    facts["labels"] = label_counts(rows)
    return dataset_from_rows(alternate_labels(rows)), facts


def _check(config: KTOTrainConfig) -> None:
    if config.loss_type == "kto" and config.per_device_train_batch_size < 2:
        raise ConfigError(
            "KTO estimates its KL term from the other answers of a batch, so a batch needs "
            f"at least 2 rows (got {config.per_device_train_batch_size})",
            key="per_device_train_batch_size",
            fix="Set per_device_train_batch_size to 2 or more (gradient_accumulation_steps "
            "grows the effective batch), or use loss_type apo_zero_unpaired.",
        )
    resolve_resume(config.resume, config.output_dir)  # a bad resume fails before any load


def train_kto(config: KTOTrainConfig) -> TrainResult:
    """Run TRL's KTOTrainer; rows are trained in the order `load_kto_dataset` gives them."""
    check_run_paths(config, replaces=True)  # its data and model survive the run
    _check(config)  # before the slow imports: a wrong setting fails at once
    from trl import KTOConfig, KTOTrainer

    prepare_launch()
    model = config.model
    train, facts = load_kto_dataset(config.train_data, config.min_confidence)
    evald = load_kto_dataset(config.eval_data)[0] if config.eval_data else None
    kwargs = config.trl_kwargs(
        evaluate=evald is not None,
        beta=config.beta,
        loss_type=config.loss_type,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        max_length=config.max_length,
    )
    trainer = KTOTrainer(
        model=model,
        args=KTOConfig(**kwargs),
        train_dataset=train,
        eval_dataset=evald,
        peft_config=config.peft_config(),
    )
    kind = "preference pairs" if "unpaired_from_pairs" in facts else "answers marked good/bad"
    inputs = CardInputs(
        method="KTO (TRL KTOTrainer)",
        settings=(
            "beta",
            "loss_type",
            "desirable_weight",
            "undesirable_weight",
            "min_confidence",
            "max_length",
        ),
        data=preference_data(config.train_data, kind),
        notes={"labels": facts["labels"]},
        tags=["kto", "trl"],
    )
    facts = {"train_data": config.train_data, **facts}
    return run_trainer(trainer, config, "KTO policy", facts, inputs)
