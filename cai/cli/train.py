"""`cai train sft | reward | dpo | kto | orpo | grpo | rloo | ppo`: one command per trainer.

Each trainer is a table of flags (typed shortcuts for its settings keys, see
`cai.cli.settings_command`) and a function that loads the settings (YAML < flags < --set),
trains and prints one summary from rank 0. The settings classes and trainers are imported
only when a command runs, so `cai --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cai.cli.options import (
    BaseModelOpt,
    BatchSizeOpt,
    EpochsOpt,
    LearningRateOpt,
    LoraOpt,
    MaxStepsOpt,
    PairDataOpt,
    PairEvalOpt,
    PrivateOpt,
    PromptsOpt,
    PushToHubOpt,
    ReportToOpt,
    ResumeOpt,
    SeedOpt,
)
from cai.cli.settings_command import Flag, settings_command

train_app = typer.Typer(
    help="Fine-tune policies and reward models from YAML configs with CLI overrides.",
    no_args_is_help=True,
)

MODEL = Flag("model", BaseModelOpt)
SEED = Flag("seed", SeedOpt)
RESUME = Flag("resume", ResumeOpt)
LEARNING_RATE = Flag("learning_rate", LearningRateOpt)
STEPS_AND_BATCH = (
    Flag("max_steps", MaxStepsOpt),
    Flag("epochs", EpochsOpt, key="num_train_epochs"),
    LEARNING_RATE,
    Flag("batch_size", BatchSizeOpt, key="per_device_train_batch_size"),
)
RUN_FLAGS = (*STEPS_AND_BATCH, Flag("lora", LoraOpt, key="lora.enabled"), RESUME, SEED)
"""The run flags of the TRL trainers, under their settings keys."""
PAIRS = (MODEL, Flag("train_data", PairDataOpt), Flag("eval_data", PairEvalOpt))
PUBLISH_FLAGS = (
    Flag("report_to", ReportToOpt),
    Flag("push_to_hub", PushToHubOpt),
    Flag("private", PrivateOpt),
)
"""Trackers and the Hub push: every trainer has them (added to each table below)."""


def _option(kind: type, *decls: str, help: str | None = None) -> Any:
    """A trainer's own flag (one not shared with other commands)."""
    return Annotated[kind | None, typer.Option(*decls, help=help)]


def _beta(help: str) -> Flag:
    return Flag("beta", _option(float, help=help))


def _load(settings_class: type, config: Path | None, options: dict, overrides: list[str]):
    """The settings a user's command asks for; library logs go to the output directory."""
    from cai.config import load_config
    from cai.logs import route_library_logs
    from cai.paths import check_run_paths

    settings = load_config(settings_class, config, options, overrides, check_models=True)
    check_run_paths(settings, replaces=True)  # before the logs directory is made inside --out
    route_library_logs(settings.output_dir)
    return settings


def _main_process() -> bool:
    from cai.train.distributed import is_main_process

    return is_main_process()  # one summary per run, from rank 0


def _report_steps(result) -> None:
    if _main_process():
        typer.echo(f"trained {result.global_step} steps -> {result.output_dir}")


# ---- sft ---------------------------------------------------------------------------------------
SFT_FLAGS = (
    MODEL,
    Flag("dataset", _option(str, help="The sft/ dir of `cai revise`, or a .jsonl/.parquet file.")),
    *RUN_FLAGS,
)


def _sft(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.sft import SftTrainConfig, train_sft

    result = train_sft(_load(SftTrainConfig, config, options, overrides))
    if _main_process():
        typer.echo(
            f"trained {result.steps} steps on {result.train_rows} rows "
            f"(final loss {result.final_loss}, {result.seconds:.1f}s) -> {result.output_dir}"
        )


# ---- reward ------------------------------------------------------------------------------------
def _source_weights(values: list[str]) -> dict[str, Any]:
    from cai.config import parse_override

    return dict(
        (".".join(keys), value)
        for keys, value in (parse_override(f"source_weights.{item}") for item in values)
    )


REWARD_FLAGS = (
    *PAIRS,
    Flag("human_eval_data", _option(str, "--human-eval", help="Human-labelled held-out set.")),
    Flag("labels", _option(str, help="soft (BCE on prob_chosen) or hard.")),
    Flag(
        "source_weight",
        Annotated[
            list[str], typer.Option(help="Loss weight per source as SOURCE=W, e.g. human=2.")
        ],
        to_options=_source_weights,
    ),
    *STEPS_AND_BATCH,
    RESUME,
    SEED,
)


def _reward(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.reward import RewardTrainConfig, train_reward_model

    result = train_reward_model(_load(RewardTrainConfig, config, options, overrides))
    if _main_process():
        typer.echo(f"trained {result.global_step} steps -> {result.output_dir}")
        shown = {k: v for k, v in result.metrics.items() if k.startswith(("human_", "eval_"))}
        for key, value in sorted(shown.items()):
            typer.echo(f"  {key}: {value:.4g}")


# ---- dpo, kto, orpo ----------------------------------------------------------------------------
DPO_FLAGS = (*PAIRS, _beta("DPO temperature (KL strength)."), *RUN_FLAGS)
ORPO_FLAGS = (*PAIRS, _beta("Weight of the odds-ratio term."), *RUN_FLAGS)
KTO_FLAGS = (
    MODEL,
    Flag("train_data", _option(str, "--data", help="Rows marked good/bad, or pairs.")),
    Flag("eval_data", _option(str, help="Held-out rows of either kind.")),
    _beta("KTO temperature (KL strength)."),
    Flag("desirable_weight", _option(float, help="Weight of thumbs-up losses.")),
    Flag("undesirable_weight", _option(float, help="Weight of thumbs-down losses.")),
    Flag("min_confidence", _option(float, help="Pairs: drop |prob_chosen - 0.5| below this.")),
    *RUN_FLAGS,
)


def _dpo(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.preference import DPOTrainConfig, train_dpo

    _report_steps(train_dpo(_load(DPOTrainConfig, config, options, overrides)))


def _kto(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.kto import KTOTrainConfig, train_kto

    _report_steps(train_kto(_load(KTOTrainConfig, config, options, overrides)))


def _orpo(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.orpo import ORPOTrainConfig, train_orpo

    _report_steps(train_orpo(_load(ORPOTrainConfig, config, options, overrides)))


# ---- grpo, rloo --------------------------------------------------------------------------------
ONLINE_FLAGS = (
    MODEL,
    Flag("prompts", PromptsOpt),
    Flag(
        "reward_model",
        Annotated[list[str], typer.Option(help="Reward model directory (repeatable).")],
        key="reward_models",
    ),
    Flag(
        "judge_backend", _option(str, help="Judge as reward: backend kind."), "judge.backend.kind"
    ),
    Flag("judge_model", _option(str, help="Judge model path or name."), "judge.backend.model"),
    Flag("constitution", _option(str, help="Constitution for the judge."), "judge.constitution"),
    Flag("num_generations", _option(int, help="Completions per prompt.")),
    Flag("max_completion_length", _option(int, help="Longest completion in tokens.")),
    *RUN_FLAGS,
)


def _online(algorithm: str):
    def run(config: Path | None, options: dict, overrides: list[str]) -> None:
        from cai.train.preference import OnlineTrainConfig, train_online

        settings = _load(OnlineTrainConfig, config, options, overrides)
        _report_steps(train_online(algorithm, settings))

    return run


# ---- ppo ---------------------------------------------------------------------------------------
PPO_FLAGS = (
    MODEL,
    Flag("prompts", PromptsOpt),
    Flag(
        "reward_model",
        _option(str, help="Reward model directory (sets reward.kind=model)."),
        to_options=lambda path: {"reward": {"kind": "model", "path": path}},
    ),
    Flag("steps", _option(int, help="PPO iterations (rollout batch + updates).")),
    Flag("batch_size", _option(int, help="Prompts rolled out per step per process.")),
    Flag("mini_batch_size", _option(int, help="Samples per optimiser step.")),
    LEARNING_RATE,
    Flag("kl_coef", _option(float, help="Initial KL penalty coefficient.")),
    Flag(
        "adaptive_kl",
        _option(bool, "--adaptive-kl/--fixed-kl", help="Adapt the KL coefficient to --target-kl."),
    ),
    Flag("target_kl", _option(float, help="Target KL (nats per response).")),
    Flag("max_new_tokens", _option(int, help="Longest response in tokens.")),
    Flag("rollout_engine", _option(str, help="transformers or vllm (GPU).")),
    RESUME,
    SEED,
)


def _ppo(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.train.ppo.config import PPOConfig
    from cai.train.ppo.trainer import train_ppo

    result = train_ppo(_load(PPOConfig, config, options, overrides))
    if not _main_process():
        return
    typer.echo(f"ppo: {result.last_step} steps -> {result.output_dir}")
    written = ("metrics", result.metrics_path), ("curves", result.plot_path)
    for label, path in (*written, ("policy", result.final_model_dir)):
        if path:
            typer.echo(f"  {label + ':':<9}{path}")


_ONLINE_DOC = "on prompts, rewarded by reward models and/or the constitutional judge (TRL)."
COMMANDS: tuple[tuple[str, tuple[Flag, ...], Any, str], ...] = (
    ("sft", SFT_FLAGS, _sft, "Fine-tune a policy on an SL-CAI dataset with TRL's SFTTrainer."),
    (
        "reward",
        REWARD_FLAGS,
        _reward,
        "Train a reward model on AI, human or mixed preferences (soft labels by default).",
    ),
    (
        "dpo",
        DPO_FLAGS,
        _dpo,
        "Direct preference optimisation on a cai preference dataset (TRL DPOTrainer).",
    ),
    (
        "kto",
        KTO_FLAGS,
        _kto,
        "KTO on answers marked good or bad, or on pairs split into them (TRL KTOTrainer).",
    ),
    (
        "orpo",
        ORPO_FLAGS,
        _orpo,
        "Odds-ratio preference optimisation: no reference model (TRL ORPOTrainer).",
    ),
    ("grpo", ONLINE_FLAGS, _online("grpo"), f"GRPO {_ONLINE_DOC}"),
    ("rloo", ONLINE_FLAGS, _online("rloo"), f"RLOO {_ONLINE_DOC}"),
    (
        "ppo",
        PPO_FLAGS,
        _ppo,
        "Optimise a policy with PPO under a KL penalty to its starting point.",
    ),
)

for _name, _flags, _run, _doc in COMMANDS:
    train_app.command(_name)(settings_command((*_flags, *PUBLISH_FLAGS), _run, _doc))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
