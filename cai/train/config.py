"""Settings every trainer shares: common knobs, LoRA, precision and resume.

Loading goes through the one config loader (`cai.config.load_config`: YAML < typed flags <
`--set`), re-exported here for the trainers; the resolved settings are saved as
`config.resolved.yaml` in the output directory like every other command's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cai.config import (  # noqa: F401  (the one loader, re-exported for trainers)
    ConfigError,
    load_config,
    parse_override,
    save_resolved,
    set_dotted,
)
from cai.model_names import ModelName
from cai.train.push import HubRepoId
from cai.train.tracking import ReportTo

M = TypeVar("M", bound=BaseModel)


class LoraSettings(BaseModel):
    """LoRA adapter settings (peft); `enabled: false` trains the full model."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    merge: bool = True
    """Merge the adapter into the base weights when saving, so vLLM and transformers load the
    result like any model; false saves the adapter alone (load it with peft)."""


class TrainCommon(BaseModel):
    """Settings every trainer shares; trainer configs subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    """A local model directory, an embedded model name (see `cai models list`) or a hub id."""
    output_dir: str
    seed: int = 0
    learning_rate: float = Field(2e-5, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    """> 0 overrides num_train_epochs."""
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of all steps spent on linear warm-up (transformers 5 takes it as warmup_steps)."""
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = 2
    resume: bool | str = False
    """false: start fresh; true: continue from the newest checkpoint-* in output_dir (an error
    if there is none); "auto": continue when one exists; a path: from that checkpoint."""
    dtype: str = "auto"
    """auto (bf16 mixed precision where the GPU supports it, else float32) | float32 |
    bfloat16 | float16."""
    gradient_checkpointing: bool = False
    report_to: ReportTo = Field(default_factory=list)
    """Experiment trackers (tensorboard, wandb, trackio, mlflow); none by default, so nothing
    is sent anywhere unless asked (`cai.train.tracking`)."""
    push_to_hub: HubRepoId = None
    """A Hub repository (owner/name) to push the model and its card to after training."""
    private: bool = False
    """Create the pushed repository private."""
    lora: LoraSettings = Field(default_factory=LoraSettings)


def precision_flags(dtype: str) -> dict[str, bool]:
    """Trainer mixed-precision flags for a dtype name; "auto" = bf16 only where hardware does it."""
    if dtype == "auto":
        import torch

        return {
            "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
            "fp16": False,
        }
    table = {
        "float32": {"bf16": False, "fp16": False},
        "bfloat16": {"bf16": True, "fp16": False},
        "float16": {"bf16": False, "fp16": True},
    }
    if dtype not in table:
        raise ConfigError(f"dtype {dtype!r}: use auto, float32, bfloat16 or float16.")
    return table[dtype]


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The checkpoint-N directory with the largest N in output_dir, or None."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = [
        (int(path.name.split("-", 1)[1]), path)
        for path in out.iterdir()
        if path.is_dir() and path.name.startswith("checkpoint-") and path.name[11:].isdigit()
    ]
    return str(max(found)[1]) if found else None


def resolve_resume(setting: bool | str | None, output_dir: str | Path) -> str | None:
    """`resume` (false, true, "auto" or a checkpoint path) -> the checkpoint to resume from."""
    if setting in (None, False, "false", ""):
        return None
    last = last_checkpoint(output_dir)
    if setting == "auto":
        return last
    if setting is True or setting == "true":
        if last is None:
            raise ConfigError(
                f"resume=true but {output_dir} holds no checkpoint-* directory. Start fresh "
                "without it, or use resume=auto to continue only when a checkpoint exists."
            )
        return last
    if not Path(str(setting)).is_dir():
        raise ConfigError(f"resume: {setting} is not a checkpoint directory.")
    return str(setting)


def save_config(config: BaseModel, directory: str | Path) -> Path:
    """Write a trainer's resolved settings as `config.resolved.yaml` in its output directory."""
    data = config.model_dump(mode="json")
    return save_resolved(data, directory, _TRAIN_PATH_KEYS)


#: Settings of trainer configs that hold local paths (written relative to the output dir).
_TRAIN_PATH_KEYS = (
    "model",
    "ref_model",
    "reward_model",
    "train_data",
    "eval_data",
    "human_eval_data",
    "dataset",
    "prompts",
    "constitution",
    "output_dir",
)
