"""Local test helpers: tiny random models and tokenizers that need no network."""

from cai.testing.tiny import (
    TinySpec,
    build_tiny_causal_lm,
    build_tiny_reward_model,
    build_tokenizer,
)

__all__ = ["TinySpec", "build_tiny_causal_lm", "build_tiny_reward_model", "build_tokenizer"]
