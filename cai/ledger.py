"""The token ledger: prompt and completion tokens per stage and model, and the run's budget.

Counts come from the engines themselves (`Generation.prompt_tokens` / `completion_tokens`,
`ChoiceScore.prompt_tokens`). `LedgerBackend` wraps a stage's backend and counts every answer
that passes through it; answers the call cache served, and repeats of one request within a
batch, are counted apart as *cached* (the engine did not spend them), so `spent` says what
was really paid for. Answers whose engine reported no count are counted as `uncounted_calls`
rather than guessed.

Each chunk's counts travel with the chunk: the first record of every committed chunk holds
them (`chunk_tokens`), so they are written in the same atomic rename as the chunk's results
and a resumed run's ledger adds up the whole job, not only the part done this time.

The budget and the cost report that read these counts are in `cai.budget`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from cai.backends.base import Backend, BackendWrapper, ChoiceScore, Generation
from cai.jobs import finished_chunk_files

CHUNK_TOKENS = "chunk_tokens"
"""The key of a chunk's token counts, on the first record of each committed chunk."""


class TokenCount(BaseModel):
    """Calls and tokens of one model in one stage (cached ones apart from those spent)."""

    model_config = ConfigDict(extra="ignore")  # `spent` is written out, and read back as such

    calls: int = 0
    prompt: int = 0
    completion: int = 0
    cached_calls: int = 0
    cached_prompt: int = 0
    cached_completion: int = 0
    uncounted_calls: int = 0
    """Calls whose engine reported no token counts (not in `prompt` / `completion`)."""

    @computed_field
    @property
    def spent(self) -> int:
        """Tokens the engine processed for these calls (cached ones excluded)."""
        return self.prompt + self.completion

    def plus(self, other: TokenCount) -> TokenCount:
        fields = TokenCount.model_fields
        return TokenCount(**{name: getattr(self, name) + getattr(other, name) for name in fields})


class TokenLedger(BaseModel):
    """Token counts keyed by stage, then model identity; mergeable and JSON-serialisable."""

    model_config = ConfigDict(extra="forbid")

    stages: dict[str, dict[str, TokenCount]] = Field(default_factory=dict)

    def count(self, stage: str, model: str) -> TokenCount:
        return self.stages.setdefault(stage, {}).setdefault(model, TokenCount())

    def record(
        self,
        stage: str,
        model: str,
        prompt: int | None,
        completion: int | None,
        *,
        cached: bool,
    ) -> None:
        """One answer: its tokens as spent, as served from the cache, or as uncounted."""
        entry = self.count(stage, model)
        if cached:
            entry.cached_calls += 1
            entry.cached_prompt += prompt or 0
            entry.cached_completion += completion or 0
        elif prompt is None:
            entry.uncounted_calls += 1
        else:
            entry.calls += 1
            entry.prompt += prompt
            entry.completion += completion or 0

    def merged(self, other: TokenLedger | None) -> TokenLedger:
        """A new ledger holding both (the sum per stage and model)."""
        out = self.model_copy(deep=True)
        for stage, models in (other.stages if other else {}).items():
            for model, counts in models.items():
                out.stages.setdefault(stage, {})[model] = out.count(stage, model).plus(counts)
        return out

    def total(self, stage: str | None = None) -> TokenCount:
        """Everything of one stage (or of all), summed over models."""
        out = TokenCount()
        for name, models in self.stages.items():
            if stage is None or name == stage:
                for counts in models.values():
                    out = out.plus(counts)
        return out

    def by_model(self) -> dict[str, TokenCount]:
        """Counts per model, summed over stages."""
        out: dict[str, TokenCount] = {}
        for models in self.stages.values():
            for model, counts in models.items():
                out[model] = out.get(model, TokenCount()).plus(counts)
        return out

    @property
    def spent(self) -> int:
        return self.total().spent


def _answer_tokens(answer: Generation | ChoiceScore) -> tuple[int | None, int | None]:
    if isinstance(answer, Generation):
        completion = answer.completion_tokens
        return answer.prompt_tokens, (sum(completion) if completion is not None else None)
    return answer.prompt_tokens, 0


class LedgerBackend(BackendWrapper):
    """Counts the tokens of every answer passing through `inner`, under one stage name.

    It wraps what `make_backend` returned (so the call cache, when there is one, is inside):
    answers the cache says it served are counted as cached, and so is the second of two
    identical requests in one batch (the cache answers both with one engine call).
    """

    def __init__(self, inner: Backend, stage: str) -> None:
        self.inner = inner
        self.stage = stage
        self.model_id = inner.model_id
        self.ledger = TokenLedger()

    def wrapped(self) -> Backend:
        return self.inner

    def passed(self, answers: list[Any]) -> list[Any]:
        served = self.inner.last_served
        if not isinstance(served, list) or len(served) != len(answers):
            served = [False] * len(answers)
        seen: set[int] = set()
        for answer, from_cache in zip(answers, served, strict=True):
            repeat = id(answer) in seen
            seen.add(id(answer))
            prompt, completion = _answer_tokens(answer)
            self.ledger.record(
                self.stage, self.model_id, prompt, completion, cached=from_cache or repeat
            )
        return answers

    def take(self) -> TokenLedger:
        """The counts since the last `take` (one chunk's), and start afresh."""
        ledger, self.ledger = self.ledger, TokenLedger()
        return ledger


def counting(backend: Backend, stage: str) -> LedgerBackend:
    """`backend` wrapped in a LedgerBackend for `stage` (as is when it already is one)."""
    if isinstance(backend, LedgerBackend):
        return backend
    return LedgerBackend(backend, stage)


def take_chunk_tokens(backends: Iterable[Backend]) -> TokenLedger:
    """The counts the given backends collected since the last call (one chunk's)."""
    out = TokenLedger()
    for backend in backends:
        if isinstance(backend, LedgerBackend):
            out = out.merged(backend.take())
    return out


def attach_chunk_tokens(rows: list[dict[str, Any]], ledger: TokenLedger) -> list[dict[str, Any]]:
    """Put a chunk's counts on its first record (they are committed with the rows)."""
    if rows:
        rows[0][CHUNK_TOKENS] = ledger.model_dump(mode="json")
    return rows


def row_tokens(row: dict[str, Any] | None) -> TokenLedger:
    """The chunk counts a record carries (an empty ledger when it carries none)."""
    data = (row or {}).get(CHUNK_TOKENS)
    return TokenLedger.model_validate(data) if isinstance(data, dict) else TokenLedger()


def chunk_file_tokens(path: str | Path) -> TokenLedger:
    """The counts of one committed chunk file (read from its first line only)."""
    with Path(path).open(encoding="utf-8") as handle:
        first = handle.readline()
    return row_tokens(json.loads(first)) if first.strip() else TokenLedger()


def job_tokens(work_dir: str | Path) -> TokenLedger:
    """The counts of every chunk of a finished stage job (an unfinished one counts none)."""
    out = TokenLedger()
    for path in finished_chunk_files(work_dir):
        out = out.merged(chunk_file_tokens(path))
    return out
