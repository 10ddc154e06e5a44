"""`cai train ppo`: the RL stage of RL-CAI (PPO against a reward model or a reward function)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(train_app: typer.Typer) -> None:
    @train_app.command("ppo")
    def ppo(
        config: Path | None = typer.Option(
            None, "--config", "-c", help="YAML file of PPOConfig settings (see examples/ppo.yaml)."
        ),
        model: str | None = typer.Option(
            None, help="Starting policy directory (e.g. the SL-CAI model)."
        ),
        prompts: str | None = typer.Option(
            None, help="Prompts: JSONL, CSV, Parquet or dataset dir."
        ),
        reward_model: str | None = typer.Option(
            None, help="Reward model directory (sets reward.kind=model)."
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", "-o"),
        steps: int | None = typer.Option(None, help="PPO iterations (rollout batch + updates)."),
        batch_size: int | None = typer.Option(
            None, help="Prompts rolled out per step per process."
        ),
        mini_batch_size: int | None = typer.Option(None, help="Samples per optimiser step."),
        learning_rate: float | None = typer.Option(None),
        kl_coef: float | None = typer.Option(None, help="Initial KL penalty coefficient."),
        adaptive_kl: bool | None = typer.Option(
            None, "--adaptive-kl/--fixed-kl", help="Adapt the KL coefficient towards --target-kl."
        ),
        target_kl: float | None = typer.Option(None, help="Target KL (nats per response)."),
        max_new_tokens: int | None = typer.Option(None),
        rollout_engine: str | None = typer.Option(None, help="transformers or vllm (GPU)."),
        resume: bool | None = typer.Option(
            None, "--resume/--no-resume", help="Continue from the newest checkpoint."
        ),
        seed: int | None = typer.Option(None),
        overrides: list[str] = typer.Option(
            [], "--set", help="Any setting as dotted.key=value (repeatable), e.g. --set lam=0.9."
        ),
    ) -> None:
        """Optimise a policy with PPO under a KL penalty to its starting point."""
        from cai.config import load_config
        from cai.logs import route_library_logs
        from cai.train.distributed import is_main_process
        from cai.train.ppo.config import PPOConfig
        from cai.train.ppo.trainer import train_ppo

        options = {
            "model": model,
            "prompts": prompts,
            "output_dir": output_dir,
            "steps": steps,
            "batch_size": batch_size,
            "mini_batch_size": mini_batch_size,
            "learning_rate": learning_rate,
            "kl_coef": kl_coef,
            "adaptive_kl": adaptive_kl,
            "target_kl": target_kl,
            "max_new_tokens": max_new_tokens,
            "rollout_engine": rollout_engine,
            "resume": resume,
            "seed": seed,
        }
        extra = [f"reward={{kind: model, path: {reward_model!r}}}"] if reward_model else []
        settings = load_config(PPOConfig, config, options, [*extra, *overrides])
        route_library_logs(settings.output_dir)
        result = train_ppo(settings)
        if not is_main_process():
            return  # one summary per run, from rank 0
        typer.echo(f"ppo: {result.last_step} steps -> {result.output_dir}")
        typer.echo(f"  metrics: {result.metrics_path}")
        if result.plot_path:
            typer.echo(f"  curves:  {result.plot_path}")
        if result.final_model_dir:
            typer.echo(f"  policy:  {result.final_model_dir}")
