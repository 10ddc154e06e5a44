"""`cai train dpo | kto | orpo | grpo | rloo`: TRL preference and on-policy trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_CONFIG_HELP = "YAML file of the trainer's settings (see docs/training.md)."
_SET_HELP = "Any setting as dotted.key=value (repeatable), e.g. judge.mode=pairwise."

# The flags every trainer here shares, declared once; each command lists only its own.
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help=_CONFIG_HELP)]
ModelOpt = Annotated[str | None, typer.Option(help="Policy model directory.")]
OutputDirOpt = Annotated[str | None, typer.Option("--output-dir", "-o")]
MaxStepsOpt = Annotated[int | None, typer.Option()]
EpochsOpt = Annotated[float | None, typer.Option()]
LearningRateOpt = Annotated[float | None, typer.Option()]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Per-device train batch size.")]
LoraOpt = Annotated[bool | None, typer.Option("--lora/--full")]
ResumeOpt = Annotated[bool | None, typer.Option("--resume/--no-resume")]
SeedOpt = Annotated[int | None, typer.Option()]
SetOpt = Annotated[list[str], typer.Option("--set", help=_SET_HELP)]
# The dataset flags DPO and ORPO share.
PairDataOpt = Annotated[str | None, typer.Option("--data", help="Preference dataset.")]
PairEvalOpt = Annotated[str | None, typer.Option(help="Held-out preference dataset.")]


def _report(result) -> None:
    from cai.train.distributed import is_main_process

    if is_main_process():  # one summary per run, from rank 0
        typer.echo(f"trained {result.global_step} steps -> {result.output_dir}")


def _run_options(
    output_dir, max_steps, epochs, learning_rate, batch_size, lora, resume, seed
) -> dict:
    """The run flags every trainer shares, under their config keys."""
    return {
        "output_dir": output_dir,
        "max_steps": max_steps,
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "lora.enabled": lora,
        "resume": resume,
        "seed": seed,
    }


def register(train_app: typer.Typer) -> None:
    @train_app.command("dpo")
    def dpo(
        config: ConfigOpt = None,
        model: ModelOpt = None,
        train_data: PairDataOpt = None,
        eval_data: PairEvalOpt = None,
        beta: float | None = typer.Option(None, help="DPO temperature (KL strength)."),
        output_dir: OutputDirOpt = None,
        max_steps: MaxStepsOpt = None,
        epochs: EpochsOpt = None,
        learning_rate: LearningRateOpt = None,
        batch_size: BatchSizeOpt = None,
        lora: LoraOpt = None,
        resume: ResumeOpt = None,
        seed: SeedOpt = None,
        overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
    ) -> None:
        """Direct preference optimisation on a cai preference dataset (TRL DPOTrainer)."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.preference import DPOTrainConfig, train_dpo

        options = {
            "model": model,
            "train_data": train_data,
            "eval_data": eval_data,
            "beta": beta,
            **_run_options(
                output_dir, max_steps, epochs, learning_rate, batch_size, lora, resume, seed
            ),
        }
        settings = load_config(DPOTrainConfig, config, options, overrides)
        route_library_logs(settings.output_dir)
        _report(train_dpo(settings))

    @train_app.command("kto")
    def kto(
        config: ConfigOpt = None,
        model: ModelOpt = None,
        train_data: str | None = typer.Option(
            None, "--data", help="Thumbs up/down rows (prompt/completion/label) or pairs."
        ),
        eval_data: str | None = typer.Option(None, help="Held-out rows of either kind."),
        beta: float | None = typer.Option(None, help="KTO temperature (KL strength)."),
        desirable_weight: float | None = typer.Option(None, help="Weight of thumbs-up losses."),
        undesirable_weight: float | None = typer.Option(None, help="Weight of thumbs-down losses."),
        min_confidence: float | None = typer.Option(
            None, help="Pairs only: drop pairs with |prob_chosen - 0.5| below this."
        ),
        output_dir: OutputDirOpt = None,
        max_steps: MaxStepsOpt = None,
        epochs: EpochsOpt = None,
        learning_rate: LearningRateOpt = None,
        batch_size: int | None = typer.Option(None, help="Per-device train batch size (>= 2)."),
        lora: LoraOpt = None,
        resume: ResumeOpt = None,
        seed: SeedOpt = None,
        overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
    ) -> None:
        """KTO on answers marked good or bad, or on pairs split into them (TRL KTOTrainer)."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.kto import KTOTrainConfig, train_kto

        options = {
            "model": model,
            "train_data": train_data,
            "eval_data": eval_data,
            "beta": beta,
            "desirable_weight": desirable_weight,
            "undesirable_weight": undesirable_weight,
            "min_confidence": min_confidence,
            **_run_options(
                output_dir, max_steps, epochs, learning_rate, batch_size, lora, resume, seed
            ),
        }
        settings = load_config(KTOTrainConfig, config, options, overrides)
        route_library_logs(settings.output_dir)
        _report(train_kto(settings))

    @train_app.command("orpo")
    def orpo(
        config: ConfigOpt = None,
        model: ModelOpt = None,
        train_data: PairDataOpt = None,
        eval_data: PairEvalOpt = None,
        beta: float | None = typer.Option(None, help="Weight of the odds-ratio term."),
        output_dir: OutputDirOpt = None,
        max_steps: MaxStepsOpt = None,
        epochs: EpochsOpt = None,
        learning_rate: LearningRateOpt = None,
        batch_size: BatchSizeOpt = None,
        lora: LoraOpt = None,
        resume: ResumeOpt = None,
        seed: SeedOpt = None,
        overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
    ) -> None:
        """Odds-ratio preference optimisation: no reference model (TRL ORPOTrainer)."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.orpo import ORPOTrainConfig, train_orpo

        options = {
            "model": model,
            "train_data": train_data,
            "eval_data": eval_data,
            "beta": beta,
            **_run_options(
                output_dir, max_steps, epochs, learning_rate, batch_size, lora, resume, seed
            ),
        }
        settings = load_config(ORPOTrainConfig, config, options, overrides)
        route_library_logs(settings.output_dir)
        _report(train_orpo(settings))

    def _online(algorithm: str):
        def command(
            config: ConfigOpt = None,
            model: ModelOpt = None,
            prompts: str | None = typer.Option(None, help="Prompts file (.jsonl/.csv/.parquet)."),
            reward_model: list[str] = typer.Option([], help="Reward model directory (repeatable)."),
            judge_backend: str | None = typer.Option(
                None, help="Judge as reward: backend kind (vllm, openai, transformers)."
            ),
            judge_model: str | None = typer.Option(None, help="Judge model path or name."),
            constitution: str | None = typer.Option(None, help="Constitution for the judge."),
            num_generations: int | None = typer.Option(None, help="Completions per prompt."),
            max_completion_length: int | None = typer.Option(None),
            output_dir: OutputDirOpt = None,
            max_steps: MaxStepsOpt = None,
            epochs: EpochsOpt = None,
            learning_rate: LearningRateOpt = None,
            batch_size: BatchSizeOpt = None,
            lora: LoraOpt = None,
            resume: ResumeOpt = None,
            seed: SeedOpt = None,
            overrides: SetOpt = [],  # noqa: B006 - click passes a fresh list
        ) -> None:
            from cai.config import load_config
            from cai.logs import route_library_logs
            from cai.train.preference import OnlineTrainConfig, train_online

            options = {
                "model": model,
                "prompts": prompts,
                "reward_models": reward_model or None,
                "judge.backend.kind": judge_backend,
                "judge.backend.model": judge_model,
                "judge.constitution": constitution,
                "num_generations": num_generations,
                "max_completion_length": max_completion_length,
                **_run_options(
                    output_dir, max_steps, epochs, learning_rate, batch_size, lora, resume, seed
                ),
            }
            settings = load_config(OnlineTrainConfig, config, options, overrides)
            route_library_logs(settings.output_dir)
            _report(train_online(algorithm, settings))

        command.__doc__ = (
            f"{algorithm.upper()} on prompts, rewarded by reward models and/or the "
            "constitutional judge (TRL)."
        )
        return command

    train_app.command("grpo")(_online("grpo"))
    train_app.command("rloo")(_online("rloo"))
