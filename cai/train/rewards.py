"""Reward functions for on-policy training (GRPO / RLOO) and a reward-model scorer.

Two kinds of reward:
- a trained reward model (sequence classification, one score), scored by `RewardModelScorer`
  here or handed to TRL as a directory, which TRL then places on the right device itself;
- the constitutional judge itself, scoring each completion: `AssessReward` asks "does this
  response follow the principle?" through `backend.score_choices` on the "assess" template
  (reward = probability of "follows", averaged over sampled principles); `PairwiseReward`
  asks the PairwiseJudge whether the completion beats a reference answer (both orders).

Judge rewards never invent a number: a request the backend cannot score gives `None`
(TRL then leaves that reward out for that completion) and is counted in `failures`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.backends.base import Backend, BackendError, ChoiceRequest, Message
from cai.config import ConfigError
from cai.errors import InputError
from cai.records import stable_id

log = logging.getLogger(__name__)


class JudgeRewardSpec(BaseModel):
    """How the constitutional judge scores completions during GRPO / RLOO."""

    model_config = ConfigDict(extra="forbid")

    backend: dict[str, Any] = Field(default_factory=dict)
    """A `cai.backends.BackendSpec` as a mapping (kind, model, base_urls, ...)."""
    constitution: str = "default"
    templates: str | None = None
    """A template directory overriding the bundled prompts; None = bundled."""
    mode: Literal["assess", "pairwise"] = "assess"
    principles_per_completion: int = Field(1, ge=1)
    seed: int = 0
    reference_column: str = "reference"
    """Pairwise mode: the dataset column holding the reference response to beat."""
    judge: dict[str, Any] = Field(default_factory=dict)
    """Pairwise mode: extra `JudgeConfig` fields."""


def _text(item: Any) -> str:
    """A completion as TRL passes it: a string, or a list of messages (the assistant turn)."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and isinstance(item[-1], dict):
        return str(item[-1].get("content", ""))
    if isinstance(item, dict):
        return str(item.get("content", ""))
    raise TypeError(f"cannot read a completion of type {type(item).__name__}")


def _conversation(prompt: Any) -> list[Message]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


class AssessReward:
    """Reward = P(the completion follows the principle), judged by log-probs, no sampling."""

    def __init__(self, backend: Backend, constitution, templates, k: int = 1, seed: int = 0):
        from cai.constitution.usage import require_use

        require_use(constitution, "assess")
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.k = k
        self.seed = seed
        self.calls = 0
        self.failures: list[dict[str, str]] = []

    def _requests(self, conversation: list[Message], response: str, key: str):
        from cai.constitution import sample_principles

        principles = sample_principles(self.constitution, key, self.k, self.seed, use="assess")
        out = []
        for principle in principles:
            rendered = self.templates.render(
                "assess",
                conversation=conversation,
                response=response,
                principle=principle,
                constitution=self.constitution,
            )
            out.append(
                ChoiceRequest(
                    messages=rendered.messages,
                    assistant_prefix=rendered.assistant_prefix,
                    choices=("A", "B"),
                )
            )
        return out

    def _score(self, requests: list[ChoiceRequest]) -> list[float | None]:
        """P("A" = follows) per request; a batch failure is retried one by one."""
        try:
            return [s.probs[0] for s in self.backend.score_choices(requests)]
        except BackendError:
            out: list[float | None] = []
            for request in requests:
                try:
                    out.append(self.backend.score_choices([request])[0].probs[0])
                except BackendError as err:
                    self.failures.append({"kind": type(err).__name__, "detail": str(err)})
                    out.append(None)
            return out

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        ids = kwargs.get("prompt_id")
        spans: list[tuple[int, int]] = []
        requests: list[ChoiceRequest] = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            conversation = _conversation(prompt)
            key = str(ids[i]) if ids is not None else stable_id(conversation)
            batch = self._requests(conversation, _text(completion), key)
            spans.append((len(requests), len(requests) + len(batch)))
            requests.extend(batch)
        before = len(self.failures)
        scores = self._score(requests)
        self.calls += len(requests)
        rewards: list[float | None] = []
        for start, end in spans:
            part = [s for s in scores[start:end] if s is not None]
            rewards.append(sum(part) / len(part) if part else None)
        new_failures = len(self.failures) - before
        if new_failures:
            log.warning("judge reward: %d of %d requests failed", new_failures, len(requests))
        if callable(kwargs.get("log_metric")):
            kwargs["log_metric"]("judge_reward/failures", float(new_failures))
        return rewards


class PairwiseReward:
    """Reward = debiased P(completion beats the reference), from the PairwiseJudge."""

    def __init__(self, judge, reference_column: str = "reference"):
        self.judge = judge
        self.reference_column = reference_column
        self.failures: list[dict[str, Any]] = []

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        from cai.judge.compare import PairToJudge

        references = kwargs.get(self.reference_column)
        if references is None:
            raise InputError(
                f"pairwise judge reward needs a {self.reference_column!r} column in the prompt "
                "dataset holding the reference answer to beat."
            )
        ids = kwargs.get("prompt_id")
        items = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            conversation = _conversation(prompt)
            response = _text(completion)
            items.append(
                PairToJudge(
                    # one key per prompt: every completion of a group meets the same principles
                    key=str(ids[i]) if ids is not None else stable_id(conversation),
                    conversation=conversation,
                    response_a=response,
                    response_b=_text(references[i]),
                )
            )
        rewards: list[float | None] = []
        for judgment in self.judge.judge_pairs(items):
            if judgment.ok and judgment.prob_a is not None:
                rewards.append(judgment.prob_a)
            else:
                self.failures.append({"key": judgment.key, "failures": judgment.failures})
                rewards.append(None)
        return rewards


def build_judge_reward(spec: JudgeRewardSpec, backend: Backend | None = None):
    """The judge reward a spec describes; `backend` (if given) replaces spec.backend."""
    from cai.constitution import load_constitution
    from cai.templates import TemplateSet

    # Inputs first, model last: a bad constitution or template fails before anything loads.
    constitution = load_constitution(spec.constitution)
    templates = TemplateSet(spec.templates)
    if backend is None:
        from cai.backends import BackendSpec, make_backend

        if not spec.backend:
            raise ConfigError(
                "judge reward: no backend. Set judge.backend (e.g. {kind: openai, model: NAME, "
                "base_urls: [http://127.0.0.1:8000/v1]}) in the training config."
            )
        backend = make_backend(BackendSpec.model_validate(spec.backend))
    if spec.mode == "assess":
        return AssessReward(
            backend, constitution, templates, k=spec.principles_per_completion, seed=spec.seed
        )
    from cai.judge.compare import JudgeConfig, PairwiseJudge

    judge = PairwiseJudge(backend, constitution, templates, JudgeConfig(**spec.judge))
    return PairwiseReward(judge, spec.reference_column)


class RewardModelScorer:
    """Scores whole conversations with a sequence-classification reward model (one logit)."""

    def __init__(self, model, tokenizer=None, batch_size: int = 16, max_length: int | None = None):
        if isinstance(model, str | PathLike):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
            model = AutoModelForSequenceClassification.from_pretrained(str(model), num_labels=1)
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
