"""`cai train sft`: supervised fine-tuning on SL-CAI revisions."""

from __future__ import annotations

from pathlib import Path

import typer


def register(train_app: typer.Typer) -> None:
    @train_app.command("sft")
    def sft(
        config: Path | None = typer.Option(
            None, "--config", "-c", help="YAML file of SftTrainConfig settings."
        ),
        model: str | None = typer.Option(None, help="Base model directory or embedded name."),
        dataset: str | None = typer.Option(
            None, help="The sft/ directory written by `cai revise`, or a .jsonl/.parquet file."
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", "-o"),
        max_steps: int | None = typer.Option(None, help="Stop after this many steps."),
        epochs: float | None = typer.Option(None, help="Epochs (when max_steps is not set)."),
        learning_rate: float | None = typer.Option(None),
        batch_size: int | None = typer.Option(None, help="Per-device train batch size."),
        lora: bool | None = typer.Option(None, "--lora/--full", help="LoRA adapter or full model."),
        resume: bool | None = typer.Option(
            None, "--resume/--no-resume", help="Continue from the newest checkpoint."
        ),
        seed: int | None = typer.Option(None),
        overrides: list[str] = typer.Option(
            [], "--set", help="Any setting as dotted.key=value (repeatable), e.g. lora.r=8."
        ),
    ) -> None:
        """Fine-tune a policy on an SL-CAI dataset with TRL's SFTTrainer."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.distributed import is_main_process
        from cai.train.sft import SftTrainConfig, train_sft

        options = {
            "model": model,
            "dataset": dataset,
            "output_dir": output_dir,
            "max_steps": max_steps,
            "num_train_epochs": epochs,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size,
            "lora.enabled": lora,
            "resume": resume,
            "seed": seed,
        }
        settings = load_config(SftTrainConfig, config, options, overrides)
        route_library_logs(settings.output_dir)
        result = train_sft(settings)
        if not is_main_process():
            return  # one summary per run, from rank 0
        typer.echo(
            f"trained {result.steps} steps on {result.train_rows} rows "
            f"(final loss {result.final_loss}, {result.seconds:.1f}s) -> {result.output_dir}"
        )
