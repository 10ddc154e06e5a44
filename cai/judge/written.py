"""What a judge writes: chain-of-thought rationales, and verdicts for judges without log-probs.

Each judgment is a `JudgeSlot` (one pair, principle and answer order). Written answers are
generated greedily for a batch of slots at once; a rationale that cannot be used, or a
verdict that names no answer label, becomes the slot's recorded failure with the raw text,
never a label. A prompt that does not fit the context window fails only its own slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cai.backends.base import (
    Backend,
    ChoiceScore,
    ContextOverflowError,
    Generation,
    GenerationParams,
)
from cai.judge.parse import JudgeFailure, check_rationale
from cai.templates import RenderedPrompt

Order = Literal["AB", "BA"]


class AnswerSettings(Protocol):
    """The judge settings that shape a written answer (`cai.judge.compare.JudgeConfig`)."""

    cot_max_tokens: int
    seed: int
    labels: tuple[str, str]
    allow_truncated_rationale: bool


@dataclass
class JudgeSlot:
    """One judgment of a batch: which pair, principle and order, and what came of it."""

    item: int
    principle: str
    order: Order
    rendered: RenderedPrompt
    rationale: str | None = None
    stated_label: str | None = None
    score: ChoiceScore | None = None
    failure: JudgeFailure | None = None


def write_answers(
    backend: Backend, slots: list[JudgeSlot], config: AnswerSettings, verdict: bool
) -> None:
    """One greedy written answer per slot: a rationale to score after (chain of thought), or
    with `verdict` the answer itself, whose stated label becomes the slot's (hard) label."""
    params = GenerationParams(
        n=1, temperature=0.0, max_tokens=config.cot_max_tokens, seed=config.seed
    )
    results = call_isolating_overflow(
        lambda batch: backend.generate_chat(batch, params), [s.rendered.messages for s in slots]
    )
    for slot, result in zip(slots, results, strict=True):
        if isinstance(result, ContextOverflowError):
            slot.failure = overflow_failure(result, slot)
            continue
        assert isinstance(result, Generation)
        check = check_rationale(
            result.texts[0] if result.texts else "",
            result.finish_reasons[0] if result.finish_reasons else None,
            config.labels,
            allow_truncated=config.allow_truncated_rationale,
        )
        failure = check.failure
        if check.ok:
            slot.rationale, slot.stated_label = check.rationale, check.stated_label
            if verdict and check.stated_label is None:
                failure = JudgeFailure(
                    kind="unparseable",
                    raw_output=check.rationale,
                    detail="the written verdict names neither "
                    + " nor ".join(f"({label})" for label in config.labels),
                )
        if failure is not None:
            slot.failure = failure.model_copy(
                update={"principle": slot.principle, "order": slot.order}
            )


def overflow_failure(error: ContextOverflowError, slot: JudgeSlot) -> JudgeFailure:
    return JudgeFailure(
        kind="context_overflow",
        raw_output="",
        detail=str(error) or "the judge prompt does not fit in the model's context window",
        principle=slot.principle,
        order=slot.order,
    )


def call_isolating_overflow(call: Callable[[list[Any]], Any], inputs: list[Any]) -> list[Any]:
    """Call the batch function; if the batch overflows, retry one by one to isolate culprits.

    Only context overflow becomes a per-item result; any other error propagates so the job
    stops and a rerun resumes, instead of turning an outage into recorded failures.
    """
    if not inputs:
        return []
    try:
        return list(call(inputs))
    except ContextOverflowError as err:
        if len(inputs) == 1:
            return [err]
    out: list[Any] = []
    for value in inputs:
        try:
            out.extend(call([value]))
        except ContextOverflowError as err:
            out.append(err)
    return out
