"""The constitutional judge as a reward: one spec (`JudgeRewardSpec`) and its scorers.

The judge scores each completion: `AssessReward` asks "does this response follow the
principle?" through `backend.score_choices` on the "assess" template (reward = probability
of "follows", averaged over sampled principles); `PairwiseReward` asks the PairwiseJudge
whether the completion beats a reference answer (both orders). Both are TRL reward functions
as they are (GRPO / RLOO `reward_funcs`); PPO wraps them (`cai.train.ppo.rewards`). A trained
reward model is scored by `cai.train.reward_scorer.RewardModelScorer`.

Judge rewards never invent a number: a request the backend cannot score gives `None`
(TRL then leaves that reward out for that completion) and is counted in `failures`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from cai.backends import AnySpec, BackendSpec, make_backend
from cai.backends.base import Backend, BackendError, ChoiceRequest, Message
from cai.backends.owned import backend_for
from cai.config import ConfigError
from cai.constitution import load_constitution, sample_principles
from cai.constitution.usage import require_use
from cai.errors import InputError
from cai.judge.assess import assessment_requests
from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
from cai.records import completion_text, prompt_conversation, stable_id
from cai.templates import TemplateSet

log = logging.getLogger(__name__)


class JudgeRewardSpec(BaseModel):
    """The constitutional judge as a reward: one spec for GRPO / RLOO (`judge:`), PPO
    (`reward: {kind: judge, ...}`) and the training monitor.

    `principles_per_response` and `templates_dir` (the names PPO used) are read as
    `principles_per_completion` and `templates`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["judge"] = "judge"
    """The tag of PPO's `reward:` union; GRPO / RLOO's `judge:` may leave it out."""
    backend: BackendSpec | None = None
    """The judge model; required unless the caller passes a backend (a missing or empty one
    is refused, with the fix, before any model loads)."""
    constitution: str = "default"
    templates: str | None = Field(None, validation_alias=AliasChoices("templates", "templates_dir"))
    """A template directory overriding the bundled prompts; None = bundled."""
    mode: Literal["assess", "pairwise"] = "assess"
    principles_per_completion: int = Field(
        1,
        ge=1,
        validation_alias=AliasChoices("principles_per_completion", "principles_per_response"),
    )
    seed: int = 0
    reference_column: str = "reference"
    """Pairwise mode: the dataset column holding the reference response to beat."""
    judge: dict[str, Any] = Field(default_factory=dict)
    """Pairwise mode: extra `JudgeConfig` fields."""

    @field_validator("backend", mode="before")
    @classmethod
    def _empty_is_missing(cls, value: Any) -> Any:
        return None if value == {} else value


def judge_backend_spec(spec: JudgeRewardSpec) -> AnySpec:
    """The judge's backend spec; a judge reward without one stops here, saying how to add it."""
    if spec.backend is None:
        raise ConfigError(
            "the judge reward has no backend",
            key="backend",
            fix="Set the judge's backend in the training config, e.g. backend: {kind: openai, "
            "model: NAME, base_urls: [http://127.0.0.1:8000/v1]} or {kind: vllm, model: DIR} "
            "(judge.backend for GRPO / RLOO, reward.backend for PPO).",
        )
    return spec.backend


class AssessReward:
    """Reward = P(the completion follows the principle), judged by log-probs, no sampling."""

    def __init__(self, backend: Backend, constitution, templates, k: int = 1, seed: int = 0):
        require_use(constitution, "assess")
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.k = k
        self.seed = seed
        self.calls = 0
        self.failures: list[dict[str, str]] = []

    def _requests(self, conversation: list[Message], response: str, key: str):
        principles = sample_principles(self.constitution, key, self.k, self.seed, use="assess")
        return assessment_requests(
            self.templates, self.constitution, conversation, response, principles
        )

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
            conversation = prompt_conversation(prompt)
            key = str(ids[i]) if ids is not None else stable_id(conversation)
            batch = self._requests(conversation, completion_text(completion), key)
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
        references = kwargs.get(self.reference_column)
        if references is None:
            raise InputError(
                f"pairwise judge reward needs a {self.reference_column!r} column in the prompt "
                "dataset holding the reference answer to beat."
            )
        ids = kwargs.get("prompt_id")
        items = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            conversation = prompt_conversation(prompt)
            response = completion_text(completion)
            items.append(
                PairToJudge(
                    # one key per prompt: every completion of a group meets the same principles
                    key=str(ids[i]) if ids is not None else stable_id(conversation),
                    conversation=conversation,
                    response_a=response,
                    response_b=completion_text(references[i]),
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


def _judge_inputs(spec: JudgeRewardSpec):
    """Constitution and templates, loaded first: a bad one fails before any model loads."""
    return load_constitution(spec.constitution), TemplateSet(spec.templates)


def _reward_on(spec: JudgeRewardSpec, backend: Backend, constitution, templates):
    if spec.mode == "assess":
        return AssessReward(
            backend, constitution, templates, k=spec.principles_per_completion, seed=spec.seed
        )

    judge = PairwiseJudge(backend, constitution, templates, JudgeConfig(**spec.judge))
    return PairwiseReward(judge, spec.reference_column)


@contextmanager
def judge_reward(spec: JudgeRewardSpec, backend: Backend | None = None) -> Iterator[Any]:
    """The judge reward a spec describes, for the length of the block: on `backend` when one
    is given (the caller keeps it), else on one built from `spec.backend` and closed here."""
    constitution, templates = _judge_inputs(spec)
    spec_backend = spec.backend if backend is not None else judge_backend_spec(spec)
    with backend_for(spec_backend, backend) as used:
        yield _reward_on(spec, used, constitution, templates)


def build_judge_reward(spec: JudgeRewardSpec, backend: Backend | None = None):
    """The judge reward a spec describes; `backend` (if given) replaces spec.backend.

    A backend built here from the spec is the reward's own (`reward.backend`, or
    `reward.judge.backend` in pairwise mode); prefer `judge_reward`, which closes it.
    """
    constitution, templates = _judge_inputs(spec)
    if backend is None:
        backend = make_backend(judge_backend_spec(spec))
    return _reward_on(spec, backend, constitution, templates)
