"""Every flag that several commands share, declared once: one name and one help per idea.

Each is an `Annotated[type, typer.Option(...)]` a command uses as a parameter's type, e.g.
`seed: SeedOpt = None`, or a `Flag` that also names the settings key it sets (for the
commands `cai.cli.settings_command` builds or extends). A flag left out is None (or an empty
list), which the config loader reads as "not given", so the YAML file or the default decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class Flag:
    """One flag: the parameter `name` (the flag is `--name`, unless `option` spells it), its
    `option` (an `Annotated[type, typer.Option(...)]`), and the settings key it sets (default:
    `name`). `to_options` maps a value to several keys instead, for flags that set more."""

    name: str
    option: Any
    key: str | None = None
    to_options: Callable[[Any], dict[str, Any]] | None = None

    def options(self, value: Any) -> dict[str, Any]:
        if value is None or value == []:
            return {}  # not given: the YAML or the default decides
        if self.to_options is not None:
            return self.to_options(value)
        return {self.key or self.name: value}


# ---- every settings command --------------------------------------------------------------------
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file of the command's settings.")
]
PipelineConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Pipeline YAML to start from.")
]
OutOpt = Annotated[str | None, typer.Option("--out", "-o", help="Output directory.")]
OutputDirAlias = Annotated[str | None, typer.Option("--output-dir", hidden=True)]
"""The trainers' and `cai eval`'s older spelling of --out, still accepted."""
SetOpt = Annotated[
    list[str],
    typer.Option("--set", help="Any setting as dotted.key=value (repeatable; values are YAML)."),
]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed.")]
LimitOpt = Annotated[int | None, typer.Option(help="Only the first N prompts.")]
PromptColumnOpt = Annotated[str | None, typer.Option(help="Column holding the prompt.")]

# ---- models and backends ---------------------------------------------------------------------
PolicyModelOpt = Annotated[
    str | None, typer.Option("--model", help="Policy model (directory, embedded name or hub id).")
]
JudgeModelOpt = Annotated[
    str | None, typer.Option("--model", help="Judge model (directory, embedded name or hub id).")
]
BackendOpt = Annotated[str | None, typer.Option(help="Backend kind: vllm | openai | transformers.")]
BaseUrlOpt = Annotated[
    list[str], typer.Option("--base-url", help="OpenAI-compatible /v1 URL (repeatable).")
]
ConstitutionOpt = Annotated[str | None, typer.Option(help="Constitution file or bundled name.")]
TemplatesOpt = Annotated[str | None, typer.Option(help="Directory overriding bundled templates.")]

# ---- labeling stages (cai run, sample, judge, revise) ------------------------------------------
ExecutorOpt = Annotated[
    str | None,
    typer.Option("--executor", help="Where chunks run: local (this process) | ray (actors)."),
]
ActorsOpt = Annotated[
    int | None, typer.Option("--actors", help="Ray actors, one model each (with --executor ray).")
]
TokenBudgetOpt = Annotated[
    int | None,
    typer.Option(
        "--token-budget",
        help="Stop at a chunk boundary before the run spends more tokens (budget.max_tokens).",
    ),
]
OverwriteOpt = Annotated[
    bool | None,
    typer.Option("--overwrite", help="Discard earlier results in the output directory."),
]
PrinciplesOpt = Annotated[int | None, typer.Option(help="Principles per pair (ensemble size).")]
CotOpt = Annotated[bool | None, typer.Option("--cot/--no-cot", help="Chain-of-thought judging.")]
JudgeMethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="logprob (soft labels from answer-token probabilities) | verdict (a written "
        "answer parsed into a hard label, for servers that give no log-probs).",
    ),
]
MinConfidenceOpt = Annotated[float | None, typer.Option(help="Drop pairs with |p-0.5| below.")]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="Dataset format: save_to_disk | parquet | jsonl.")
]

# ---- trainers --------------------------------------------------------------------------------
BaseModelOpt = Annotated[
    str | None, typer.Option(help="Starting model (directory, embedded name or hub id).")
]
PairDataOpt = Annotated[str | None, typer.Option("--data", help="Preference dataset.")]
PairEvalOpt = Annotated[str | None, typer.Option(help="Held-out preference dataset.")]
PromptsOpt = Annotated[
    str | None, typer.Option(help="Prompts: JSONL, CSV, Parquet or dataset dir.")
]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after this many steps.")]
EpochsOpt = Annotated[float | None, typer.Option(help="Epochs (when max_steps is not set).")]
LearningRateOpt = Annotated[float | None, typer.Option(help="Peak learning rate.")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Per-device train batch size.")]
LoraOpt = Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter or full model.")]
ResumeOpt = Annotated[
    bool | None,
    typer.Option("--resume/--no-resume", help="Continue from the newest checkpoint."),
]

ReportToOpt = Annotated[
    list[str],
    typer.Option(
        "--report-to",
        help="Experiment tracker: tensorboard | wandb | trackio | mlflow (repeatable or "
        "comma-separated; default none: nothing is sent anywhere).",
    ),
]
PushToHubOpt = Annotated[
    str | None,
    typer.Option(
        "--push-to-hub",
        metavar="REPO",
        help="Push the trained model and its card to this Hub repository (owner/name).",
    ),
]
PrivateOpt = Annotated[
    bool | None,
    typer.Option("--private/--public", help="Visibility of a repository --push-to-hub creates."),
]

# ---- other tools' label files ------------------------------------------------------------------
LabelFieldsOpt = Annotated[
    str | None,
    typer.Option(
        "--fields",
        help="Where the labels file keeps the pair when its names are not cai's: "
        "prompt=NAME,a=NAME,b=NAME (Argilla fields, Label Studio task data keys).",
    ),
]
LabelQuestionOpt = Annotated[
    str | None,
    typer.Option(
        "--question",
        help="The Argilla question, or the Label Studio Pairwise tag's name, holding the "
        "answer when it is not cai's `preference`.",
    ),
]
