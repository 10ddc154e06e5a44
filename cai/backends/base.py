"""The one narrow interface every model call in `cai` goes through.

Batch-first (lists in, lists out) so engines can batch. These are cai's own types: no
vLLM, OpenAI or transformers type crosses this boundary, so the judge and the policy never
know which engine answers them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cai.errors import BackendError
from cai.records import Message

FinishReason = Literal["stop", "length", "error"]


class ContextOverflowError(BackendError):
    """The prompt does not fit in the model's context window."""


class GenerationParams(BaseModel):
    """Sampling parameters, identical in meaning on every backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value):
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return tuple(value)


class Generation(BaseModel):
    """The n completions of one request."""

    texts: list[str]
    finish_reasons: list[FinishReason]
    prompt_tokens: int | None = None
    completion_tokens: list[int] | None = None

    @property
    def failed(self) -> bool:
        """True when any completion ended in an engine error (or the lists do not match)."""
        return "error" in self.finish_reasons or len(self.texts) != len(self.finish_reasons)


class ChoiceRequest(BaseModel):
    """Score which of several candidate answers a model would give next.

    The prompt is the chat `messages` rendered with the model's chat template (generation
    prompt added) followed by `assistant_prefix` (for example "The better response is ("),
    or, when `messages` is None, the raw `text`. Each choice must be a single token.
    """

    model_config = ConfigDict(frozen=True)

    messages: list[Message] | None = None
    text: str | None = None
    assistant_prefix: str = ""
    choices: tuple[str, ...] = ("A", "B")


class ChoiceScore(BaseModel):
    """Log-probabilities of each candidate as the next token.

    `logprobs` are the raw full-vocabulary float32 log-probabilities; `probs` are the same
    renormalised over the candidates only (they sum to 1).
    """

    choices: list[str]
    logprobs: list[float]
    probs: list[float]
    prompt_tokens: int | None = None
    """Tokens the engine read to score this request (None: the engine did not say)."""

    @property
    def failed(self) -> bool:
        """True when a number is missing or not finite (NaN, ±inf): not a usable score."""
        numbers = [*self.logprobs, *self.probs]
        return (
            len(self.logprobs) != len(self.choices)
            or len(self.probs) != len(self.choices)
            or not all(math.isfinite(x) for x in numbers)
        )

    @classmethod
    def from_logprobs(
        cls,
        choices: list[str] | tuple[str, ...],
        logprobs: list[float],
        prompt_tokens: int | None = None,
    ) -> ChoiceScore:
        top = max(logprobs)
        weights = [math.exp(lp - top) for lp in logprobs]
        total = sum(weights)
        return cls(
            choices=list(choices),
            logprobs=list(logprobs),
            probs=[w / total for w in weights],
            prompt_tokens=prompt_tokens,
        )


@dataclass
class CallStats:
    """Items answered from the call cache (hits), sent to the engine (misses), and answers
    not stored because they record an engine error (failed)."""

    hits: int = 0
    misses: int = 0
    failed: int = 0


class Backend(ABC):
    """A model behind cai's interface. Subclasses implement the three batch methods.

    A wrapper (call cache, token ledger, lazy or shared engine) is a Backend around another
    one; what callers read of the backend inside it is declared here and passed on by each
    wrapper (`BackendWrapper`), so nothing reaches through a wrapper by name.
    """

    #: A stable identity of the model and the settings that change its outputs (cache key).
    model_id: str

    #: The call cache's counts, on a backend with a call cache in it; None without one.
    stats: CallStats | None = None

    #: For the answers of the last batch, in order, whether the call cache served each one
    #: (the token ledger counts those apart); None when no call cache says.
    last_served: list[bool] | None = None

    @abstractmethod
    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        """One Generation (n texts) per conversation, in order."""

    @abstractmethod
    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        """Raw-text completion, one Generation per prompt, in order."""

    @abstractmethod
    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        """One ChoiceScore per request, in order."""

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per server behind an HTTP backend: its URL, the concurrency the client chose for
        it, requests, throttles and queueing time (none for an engine in this process)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, connections and processes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


Answer = TypeVar("Answer", Generation, ChoiceScore)


class BackendWrapper(Backend):
    """A Backend in front of another one (`wrapped()`), passing on every batch, `close` and
    the attributes declared on Backend.

    A batch with no items is answered here, so it never reaches (or starts) the backend
    behind; `passed` sees every batch's answers on their way back to the caller.
    """

    @abstractmethod
    def wrapped(self) -> Backend:
        """The backend behind this one."""

    def passed(self, answers: list[Answer]) -> list[Answer]:
        """The answers of one batch, on their way back (as they are unless overridden)."""
        return answers

    @property
    def stats(self) -> CallStats | None:
        return self.wrapped().stats

    @property
    def last_served(self) -> list[bool] | None:
        return self.wrapped().last_served

    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        if not conversations:
            return []
        return self.passed(self.wrapped().generate_chat(conversations, params))

    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        if not prompts:
            return []
        return self.passed(self.wrapped().generate_text(prompts, params))

    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        if not requests:
            return []
        return self.passed(self.wrapped().score_choices(requests))

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return self.wrapped().endpoint_stats()

    def close(self) -> None:
        self.wrapped().close()
