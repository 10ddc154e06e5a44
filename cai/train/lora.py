"""The peft adapter a trainer gets from its `lora` settings (None trains the full model)."""

from __future__ import annotations

from cai.config import ConfigError
from cai.train.config import LoraSettings


def lora_config(lora: LoraSettings, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig when `lora.enabled`, else None (SEQ_CLS also trains the head)."""
    if not lora.enabled:
        return None
    try:
        from peft import LoraConfig
    except ImportError as err:
        raise ConfigError(
            "LoRA needs the `peft` package, which is not installed",
            key="lora.enabled",
            fix="pip install 'cai[peft]' (or pip install peft), or train the full model with "
            "lora.enabled=false",
        ) from err
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )
