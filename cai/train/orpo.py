"""A thin ORPO wrapper over TRL: preference training with no reference model.

ORPO (Hong et al. 2024) adds an odds-ratio term to the supervised loss of the chosen answer,
so it trains from the base model in one stage and holds one model in memory, not two.
TRL keeps it in `trl.experimental`. It reads the same preference datasets as DPO; settings,
resume, output layout and the card are DPO's (`cai.train.preference`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pydantic import Field

from cai.paths import check_run_paths
from cai.tables import InputFormatError, dataset_from_rows, load_table
from cai.train.cards import CardInputs
from cai.train.config import resolve_resume
from cai.train.distributed import prepare_launch
from cai.train.preference import (
    RunConfig,
    TrainResult,
    preference_data,
    require_columns,
    run_trainer,
)
from cai.train.unpaired import TIE_EPSILON, pair_probability

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


class ORPOTrainConfig(RunConfig):
    """ORPO on a preference dataset (prompt / chosen / rejected)."""

    train_data: str
    eval_data: str | None = None
    beta: float = Field(0.1, gt=0)
    """Weight of the odds-ratio term against the supervised loss (lambda in the paper)."""
    max_length: int | None = 1024
    max_completion_length: int | None = None
    learning_rate: float = Field(1e-6, gt=0)


def _oriented(row: dict[str, Any], where: str, number: int) -> dict[str, Any] | None:
    """The pair with its better answer as `chosen`, or None for a tie (no preference)."""
    p = pair_probability(row, where, number)
    if abs(p - 0.5) <= TIE_EPSILON:
        return None
    if p < 0.5:
        return {"prompt": row["prompt"], "chosen": row["rejected"], "rejected": row["chosen"]}
    return {c: row[c] for c in PAIR_COLUMNS}


def load_orpo_dataset(path: str | Path):
    """(prompt / chosen / rejected dataset, facts for the card). Ties are dropped (they
    prefer neither answer); a pair whose `prob_chosen` is below 0.5 is turned around; the
    other columns are left out, since TRL's ORPO collator would receive them."""

    table = load_table(path, allow_empty=False)
    require_columns(table, PAIR_COLUMNS, str(path), "ORPO")
    oriented = (_oriented(row, str(path), n) for n, row in enumerate(table, 1))
    pairs = [pair for pair in oriented if pair is not None]
    if not pairs:
        raise InputFormatError(
            f"all {len(table)} pairs are ties, which prefer neither answer",
            file=path,
            fix="Train on pairs with a preference (prob_chosen other than 0.5).",
        )
    facts = {"pairs": len(pairs), "ties_dropped": len(table) - len(pairs)}
    return dataset_from_rows(pairs, columns=list(PAIR_COLUMNS)), facts


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:  # the collator pads with it
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def train_orpo(config: ORPOTrainConfig) -> TrainResult:
    """Run TRL's ORPOTrainer on the policy alone (no reference model)."""
    check_run_paths(config, replaces=True)  # its data and model survive the run
    from trl.import_utils import TRLExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TRLExperimentalWarning)
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    prepare_launch()
    resolve_resume(config.resume, config.output_dir)  # a bad resume fails before any load
    model = config.model
    train, facts = load_orpo_dataset(config.train_data)
    evald = load_orpo_dataset(config.eval_data)[0] if config.eval_data else None
    kwargs = config.trl_kwargs(
        evaluate=evald is not None,
        beta=config.beta,
        max_length=config.max_length,
        max_completion_length=config.max_completion_length,
        # float32 master weights like DPO and KTO, and one whole copy per process (no device_map)
        model_init_kwargs={"dtype": "float32", "device_map": None},
    )
    trainer = ORPOTrainer(
        model=model,
        args=ORPOConfig(**kwargs),
        train_dataset=train,
        eval_dataset=evald,
        processing_class=_tokenizer(model),
        peft_config=config.peft_config(),
    )
    inputs = CardInputs(
        method="ORPO (TRL ORPOTrainer, no reference model)",
        settings=("beta", "max_length", "max_completion_length"),
        data=preference_data(config.train_data),
        notes={"pairs_used": facts["pairs"], "ties_dropped": facts["ties_dropped"]},
        tags=["orpo", "trl"],
    )
    facts = {"train_data": config.train_data, **facts}
    return run_trainer(trainer, config, "ORPO policy", facts, inputs)
