"""YAML config + CLI overrides -> one validated pydantic model per trainer (or stage).

Every trainer takes the same path: a YAML file (optional), then typed CLI options the user
actually passed, then `--set dotted.key=value` overrides, validated by the trainer's
pydantic model; the resolved config is saved beside the output so a run can be reproduced
from its own directory. Errors name the file, the key and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai.errors import CaiError

M = TypeVar("M", bound=BaseModel)

RESOLVED_CONFIG_NAME = "cai_config.yaml"


class ConfigError(CaiError, ValueError):
    """A config file, override or value is invalid; the message says where and how to fix it."""


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

    model: str
    """Local model directory (or an embedded model name the models registry resolves)."""
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
    report_to: list[str] = Field(default_factory=list)
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


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: no such config file.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: not valid YAML ({problem}).") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of settings (key: value), "
            f"not a {type(data).__name__}."
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3). The value is read as YAML, so 3, true, [x, y] are typed."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not of the form key=value (dotted keys for nested settings, "
            "for example --set lora.r=8)."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set data[a][b]... = value, creating mappings on the way; refuses to descend into a scalar."""
    node = data
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, BaseModel):
            child = node[part] = child.model_dump()
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(
                f"cannot set {'.'.join(path)}: {where} is a {type(child).__name__}, not a mapping."
            )
        node = child
    node[path[-1]] = value


def _format_validation(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid {model.__name__} settings ({source}):"]
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields))
            message = f"unknown setting (known top-level settings: {known})"
        elif problem["type"] == "missing":
            message = "required; set it in the YAML file or on the command line"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def load_config(
    model: type[M],
    path: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> M:
    """Build a validated `model` from YAML < typed options (None = not given) < `--set` overrides.

    Option keys may be dotted ("lora.enabled") to reach nested settings.
    """
    data: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "command line"
    for key, value in (options or {}).items():
        if value is not None:
            set_dotted(data, key.split("."), value)
    for text in overrides:
        keys, value = parse_override(text)
        set_dotted(data, keys, value)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, model, source)) from None


def save_config(config: BaseModel, directory: str | Path, name: str = RESOLVED_CONFIG_NAME) -> Path:
    """Write the resolved config as YAML into `directory` (created if needed)."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    target.write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return target
