"""Supervised fine-tuning on SL-CAI revisions with TRL's SFTTrainer (full or LoRA).

Rows are split into a conversational prompt (every message but the last) and completion
(the final revision), so by default the loss covers only the revision tokens: the model
learns to answer like its revisions, not to reproduce the prompts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cai.logs import quiet_trainer
from cai.paths import check_run_paths
from cai.tables import InputFormatError, load_table
from cai.train.cards import CardInputs, build_card, dataset_facts, write_model_card
from cai.train.config import TrainCommon, precision_flags, resolve_resume, save_config
from cai.train.distributed import (
    one_writer,
    prepare_launch,
    save_trained_model,
    trainer_debug_callback,
)
from cai.train.lora import lora_config
from cai.train.push import push_if_asked
from cai.train.tracking import trl_report_to


class SftTrainConfig(TrainCommon):
    """`cai train sft` settings (YAML keys; CLI options and --set override them)."""

    dataset: str
    """A dataset written by `cai revise` (its sft/ directory) or a .jsonl / .parquet file."""
    split: str = "train"
    messages_column: str = "messages"
    max_length: int | None = Field(1024, ge=8)
    loss_on: Literal["completion", "all"] = "completion"
    """completion: loss on the final assistant message only; all: on the whole conversation."""
    packing: bool = False


class SftResult(BaseModel):
    output_dir: str
    train_rows: int
    steps: int
    final_loss: float | None
    lora: bool
    resumed_from: str | None
    seconds: float


def prepare_rows(dataset, column: str, loss_on: str):
    """Keep only what SFTTrainer needs: prompt/completion (or messages), checking every row."""
    if column not in dataset.column_names:
        raise InputFormatError(
            f"the dataset has no {column!r} column (columns: {', '.join(dataset.column_names)}). "
            "Point --dataset at the sft/ directory written by `cai revise`, or name the column "
            "with --set messages_column=NAME."
        )
    if len(dataset) == 0:
        raise InputFormatError(
            "the dataset is empty: nothing to train on. If `cai revise` flagged every row, see its "
            "summary, or train on the flagged split with --set split=flagged."
        )

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        messages = [{"role": m["role"], "content": m["content"]} for m in row[column]]
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise InputFormatError(
                f"row {index}: {column!r} must end with an assistant message after at least one "
                "prompt message."
            )
        if loss_on == "all":
            return {"messages": messages}
        return {"prompt": messages[:-1], "completion": messages[-1:]}

    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)


def _card_inputs(config: SftTrainConfig, result: SftResult) -> CardInputs:
    return CardInputs(
        method="SL-CAI supervised fine-tuning on critique -> revision data (TRL SFTTrainer)",
        settings=("split", "loss_on", "max_length", "packing"),
        data=[dataset_facts(config.dataset, "SL-CAI revisions", split=config.split)],
        notes={"final training loss": result.final_loss, "train_rows": result.train_rows},
        tags=["sl-cai", "sft", "trl"],
    )


def train_sft(config: SftTrainConfig) -> SftResult:
    """Train, save the model, tokenizer, resolved config and a model card in output_dir.

    Under N processes each trains on its shard of every batch; the main process alone writes
    checkpoints, model, config and card (see `cai.train.distributed`).
    """
    check_run_paths(config, replaces=True)  # its data and model survive the run
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    prepare_launch()
    started = time.monotonic()
    base_model = config.model
    if not (Path(base_model) / "config.json").is_file():
        raise FileNotFoundError(
            f"model {config.model!r}: {base_model} is not a model directory (no config.json). "
            "Pass a local directory saved with save_pretrained or an embedded model name."
        )
    resume_from = resolve_resume(config.resume, config.output_dir)  # fail before loading
    train_rows = prepare_rows(
        load_table(config.dataset, config.split), config.messages_column, config.loss_on
    )
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = _sft_args(config)
    main = args.process_index == 0
    with one_writer(config.output_dir, args.world_size, main):
        trainer = SFTTrainer(
            model=base_model,
            args=args,
            train_dataset=train_rows,
            processing_class=tokenizer,
            peft_config=lora_config(config.lora),
        )
        callback = trainer_debug_callback(args.process_index, config.output_dir)
        if callback is not None:
            trainer.add_callback(callback)
        quiet_trainer(trainer)
        output = trainer.train(resume_from_checkpoint=resume_from)
        result = SftResult(
            output_dir=config.output_dir,
            train_rows=len(train_rows),
            steps=trainer.state.global_step,
            final_loss=_final_loss(trainer, output),
            lora=config.lora.enabled,
            resumed_from=resume_from,
            seconds=round(time.monotonic() - started, 3),
        )
        _save(trainer, config, result, main)
    return result


def _sft_args(config: SftTrainConfig):
    """TRL's SFTConfig from cai's settings."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=config.output_dir,
        seed=config.seed,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        gradient_checkpointing=config.gradient_checkpointing,
        report_to=trl_report_to(config.report_to),
        run_name=Path(config.output_dir).name,
        max_length=config.max_length,
        packing=config.packing,
        completion_only_loss=config.loss_on == "completion",
        model_init_kwargs={"dtype": "float32"},  # float32 master weights; AMP per dtype
        **precision_flags(config.dtype),
    )


def _final_loss(trainer, output) -> float | None:
    """The last logged training loss (the run's mean when none was logged)."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    final_loss = losses[-1] if losses else output.training_loss
    return float(final_loss) if final_loss is not None else None


def _save(trainer, config: SftTrainConfig, result: SftResult, main: bool) -> None:
    """Model and tokenizer (every process takes part), then config and card from the main one."""

    save_trained_model(trainer, config.output_dir, bool(config.lora.enabled and config.lora.merge))
    if main:
        save_config(config, config.output_dir)
        card = build_card(
            config,
            "SL-CAI fine-tuned policy",
            _card_inputs(config, result),
            {"train_loss": result.final_loss} if result.final_loss is not None else {},
            steps=result.steps,
            processes=trainer.args.world_size,
            resumed_from=result.resumed_from,
        )
        facts = {**result.model_dump(), "base_model": config.model, "config": config.model_dump()}
        write_model_card(config.output_dir, card, facts)
        push_if_asked(config.output_dir, config.push_to_hub, config.private)
    trainer.accelerator.wait_for_everyone()
