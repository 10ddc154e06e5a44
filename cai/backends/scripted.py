"""A deterministic backend driven by Python functions, for unit tests of logic.

It never stands in for an engine in integration tests; it exists so the arithmetic of the
judge, the round logic of revisions and the bookkeeping of resume can be tested exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cai.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
    Message,
)

RespondFn = Callable[[list[Message] | str, GenerationParams, int], str]
ScoreFn = Callable[[ChoiceRequest], list[float]]


def _default_respond(prompt: list[Message] | str, params: GenerationParams, index: int) -> str:
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    digest = hashlib.sha256(f"{text}|{params.seed}|{index}".encode()).hexdigest()[:8]
    return f"response {index} {digest}"


def _uniform_score(request: ChoiceRequest) -> list[float]:
    return [-1.0] * len(request.choices)


class ScriptedBackend(Backend):
    """Answers from `respond` and `score` functions and counts every call it receives."""

    def __init__(
        self,
        respond: RespondFn = _default_respond,
        score: ScoreFn = _uniform_score,
        model_id: str = "scripted",
    ) -> None:
        self.respond = respond
        self.score = score
        self.model_id = model_id
        self.calls = {"generate": 0, "score": 0}

    def _generate(self, prompts: list, params: GenerationParams) -> list[Generation]:
        out = []
        for prompt in prompts:
            self.calls["generate"] += 1
            texts = [self.respond(prompt, params, i) for i in range(params.n)]
            reasons = []
            for i, text in enumerate(texts):
                cut = len(text.split()) > params.max_tokens
                if cut:
                    texts[i] = " ".join(text.split()[: params.max_tokens])
                reasons.append("length" if cut else "stop")
            words = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
            out.append(
                Generation(
                    texts=texts,
                    finish_reasons=reasons,
                    prompt_tokens=sum(len(w.split()) for w in words),
                    completion_tokens=[len(t.split()) for t in texts],
                )
            )
        return out

    def generate_chat(self, conversations, params):
        return self._generate(conversations, params)

    def generate_text(self, prompts, params):
        return self._generate(prompts, params)

    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        out = []
        for request in requests:
            self.calls["score"] += 1
            out.append(
                ChoiceScore.from_logprobs(
                    request.choices, self.score(request), _whitespace_tokens(request)
                )
            )
        return out


def _whitespace_tokens(request: ChoiceRequest) -> int:
    """A stand-in token count: the whitespace-separated words of the request's text."""
    texts = [m["content"] for m in request.messages or []]
    texts += [request.text or "", request.assistant_prefix]
    return sum(len(t.split()) for t in texts)
