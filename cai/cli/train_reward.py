"""`cai train reward`: a soft-label reward model from a cai preference dataset."""

from __future__ import annotations

from pathlib import Path

import typer


def register(train_app: typer.Typer) -> None:
    @train_app.command("reward")
    def reward(
        config: Path | None = typer.Option(
            None, "--config", "-c", help="YAML file of RewardTrainConfig settings."
        ),
        model: str | None = typer.Option(None, help="Base model directory."),
        train_data: str | None = typer.Option(
            None, "--data", help="Preference dataset (save_to_disk dir, .parquet or .jsonl)."
        ),
        eval_data: str | None = typer.Option(None, help="Held-out preference set."),
        human_eval_data: str | None = typer.Option(
            None, "--human-eval", help="Held-out human-labelled set: accuracy is reported."
        ),
        labels: str | None = typer.Option(None, help="soft (BCE on prob_chosen) or hard."),
        source_weight: list[str] = typer.Option(
            [], help="Per-source loss weight as SOURCE=W (repeatable), e.g. human=2."
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", "-o"),
        max_steps: int | None = typer.Option(None, help="Stop after this many steps."),
        epochs: float | None = typer.Option(None, help="Epochs (when max_steps is not set)."),
        learning_rate: float | None = typer.Option(None),
        batch_size: int | None = typer.Option(None, help="Per-device train batch size."),
        resume: bool | None = typer.Option(
            None, "--resume/--no-resume", help="Continue from the newest checkpoint."
        ),
        seed: int | None = typer.Option(None),
        overrides: list[str] = typer.Option(
            [],
            "--set",
            help="Any setting as dotted.key=value (repeatable), e.g. trl.eval_steps=50.",
        ),
    ) -> None:
        """Train a reward model on AI, human or mixed preferences (soft labels by default)."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.distributed import is_main_process
        from cai.train.reward import RewardTrainConfig, train_reward_model

        options = {
            "model": model,
            "train_data": train_data,
            "eval_data": eval_data,
            "human_eval_data": human_eval_data,
            "labels": labels,
            "output_dir": output_dir,
            "max_steps": max_steps,
            "num_train_epochs": epochs,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size,
            "resume": resume,
            "seed": seed,
        }
        weights = [f"source_weights.{item}" for item in source_weight]
        settings = load_config(RewardTrainConfig, config, options, [*weights, *overrides])
        route_library_logs(settings.output_dir)
        result = train_reward_model(settings)
        if not is_main_process():
            return  # one summary per run, from rank 0
        shown = {k: v for k, v in result.metrics.items() if k.startswith(("human_", "eval_"))}
        typer.echo(f"trained {result.global_step} steps -> {result.output_dir}")
        for key, value in sorted(shown.items()):
            typer.echo(f"  {key}: {value:.4g}")
