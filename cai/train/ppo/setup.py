"""What a PPO run needs before its first step: prompts, DeepSpeed settings, the LR schedule.

Everything here fails with `PPOSetupError` (what to change) before any model loads, or fills
in what accelerate cannot infer for a loop that prepares no dataloader.
"""

from __future__ import annotations

from cai.backends.base import Message
from cai.errors import CaiError
from cai.tables import iter_prompts
from cai.train.ppo.config import PPOConfig


class PPOSetupError(CaiError, ValueError):
    """The run cannot start as configured; the message says what to change."""


def load_prompt_messages(config: PPOConfig) -> list[list[Message]]:
    """Every prompt of `config.prompts` (at most `max_prompts`), each row checked by
    `cai.tables.iter_prompts`: a bad row fails, naming its file and row, before any model loads."""

    if config.prompts is None:
        raise PPOSetupError(
            "no prompts",
            key="prompts",
            fix="Set `prompts:` to a JSONL/CSV/Parquet file or a save_to_disk directory.",
        )
    return [
        r.prompt for r in iter_prompts(config.prompts, config.prompt_column, config.max_prompts)
    ]


def configure_deepspeed(accelerator, config: PPOConfig) -> None:
    """Fill the DeepSpeed settings accelerate can only infer from a dataloader (PPO prepares
    none): the micro-batch per device, gradient accumulation and clipping come from the PPO
    config wherever the accelerate config left them "auto". A no-op without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    fixed = ds.get("gradient_accumulation_steps", "auto")
    if fixed != "auto" and int(fixed) != config.gradient_accumulation_steps:
        raise PPOSetupError(
            f"gradient_accumulation_steps is {config.gradient_accumulation_steps} in the PPO "
            f"config but {fixed} in the accelerate DeepSpeed config",
            key="gradient_accumulation_steps",
            fix="Remove it from the accelerate config (examples/accelerate/zero*.yaml leave it "
            "out) or make the two equal.",
        )
    settings = {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "gradient_clipping": config.max_grad_norm or 0.0,
    }
    for key, value in settings.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    if ds.get("train_batch_size", "auto") == "auto":
        ds["train_batch_size"] = (
            ds["train_micro_batch_size_per_gpu"]
            * ds["gradient_accumulation_steps"]
            * accelerator.num_processes
        )


def lr_factor(index: int, warmup: int, total: int, schedule: str) -> float:
    """The learning rate's multiplier at optimiser step `index`: linear warmup, then constant
    or a linear decay to 0 at `total`."""
    if warmup and index < warmup:
        return (index + 1) / warmup
    if schedule == "constant":
        return 1.0
    remaining = max(total - index, 0) / max(total - warmup, 1)
    return max(remaining, 0.0)
