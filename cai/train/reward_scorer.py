"""The one reward-model scorer: whole conversations in, one score each out.

A trained reward model (sequence classification with one output, e.g. from `cai train
reward`) scores prompt + response through its chat template, as in training. Used for the
held-out accuracy of `cai train reward` and as PPO's `reward: {kind: model}` (through
`cai.train.ppo.rewards.ModelReward`); GRPO / RLOO hand TRL the directory instead, and TRL
places the model on the right device itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

from cai.backends.base import Message
from cai.config import ConfigError


def load_reward_model(path: str | PathLike, device: Any = None):
    """(model, tokenizer) from a directory: float32, frozen, on `device` (default CPU).

    A model with other than one output is refused: its scores would not be rewards.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
    if model.config.num_labels != 1:
        raise ConfigError(
            f"a reward model needs exactly one output (num_labels=1), it has "
            f"{model.config.num_labels}",
            file=path,
            fix="Train one with `cai train reward`, or point at a one-output model directory.",
        )
    model.to(device or torch.device("cpu")).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(str(path))


class RewardModelScorer:
    """Scores whole conversations with a sequence-classification reward model (one logit).

    `model` is a loaded model (then `tokenizer` is needed) or a directory to load.
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        batch_size: int = 16,
        max_length: int | None = None,
        device: Any = None,
    ) -> None:
        if isinstance(model, str | PathLike):
            model, loaded = load_reward_model(model, device)
            tokenizer = tokenizer or loaded
        if tokenizer is None:
            raise ValueError("RewardModelScorer needs a tokenizer when given a loaded model.")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length

    def _texts(self, conversations: Sequence[list[Message] | str]) -> list[str]:
        out = []
        for conv in conversations:
            if isinstance(conv, str):
                out.append(conv)
            else:
                out.append(self.tokenizer.apply_chat_template(list(conv), tokenize=False))
        return out

    def score(self, conversations: Sequence[list[Message] | str]) -> list[float]:
        """One reward per conversation (chat template applied as in training)."""
        import torch
        from tqdm import tqdm

        texts = self._texts(conversations)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        scores: list[float] = []
        try:
            with torch.no_grad():
                starts = range(0, len(texts), self.batch_size)
                for start in tqdm(starts, desc="reward model", disable=len(starts) < 8):
                    batch = self.tokenizer(
                        texts[start : start + self.batch_size],
                        return_tensors="pt",
                        padding=True,
                        padding_side="right",
                        add_special_tokens=False,
                        truncation=self.max_length is not None,
                        max_length=self.max_length,
                    ).to(device)
                    logits = self.model(**batch).logits[:, 0]
                    scores.extend(float(x) for x in logits.float().cpu())
        finally:
            self.model.train(was_training)
        return scores
