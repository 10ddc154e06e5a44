"""The call cache in front of a backend: only calls the cache does not hold reach the engine.

The store (`cai.cache.CallCache`: keys, SQLite, recovery from damaged files) knows nothing
of backends; this wrapper is the one place that turns a batch of calls into cache keys,
sends the misses on in chunks, and stores what succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cai.backends.base import (
    Backend,
    CallStats,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
    Message,
)
from cai.cache import CallCache, call_key

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def _decode(model: type[M], text: str) -> M | None:
    """A stored answer, or None when the row is unreadable or records a failure (a miss)."""
    try:
        answer = model.model_validate_json(text)
    except ValidationError:
        return None
    return None if _failed(answer) else answer


class CachedBackend(Backend):
    """Wraps a backend so that only calls absent from the cache reach it.

    Misses go to the engine in batches of `chunk_size` and each batch is committed as one
    transaction: large enough that the engine batches well, small enough that a kill loses
    little. (Stages commit their own chunks too, so their chunk size bounds the loss first.)
    A batch that raises stores nothing; answers that record an error are returned to the
    caller but not stored, so the next run asks again."""

    def __init__(self, backend: Backend, cache: CallCache, chunk_size: int = 1024) -> None:
        self.inner = backend
        self.cache = cache
        self.chunk_size = chunk_size
        self.model_id = backend.model_id
        self.stats = CallStats()
        self.last_served: list[bool] | None = None

    def _cached(
        self,
        kind: str,
        items: list[T],
        run: Callable[[list[T]], list[M]],
        model: type[M],
        params: GenerationParams | None = None,
    ) -> list[M]:
        """`run` on the items the cache does not hold; `params` (generation) join the key."""
        settings = params.model_dump(mode="json") if params is not None else None
        keys = [call_key(self.model_id, kind, _key_data(item), settings) for item in items]
        results: dict[str, M] = {}
        for key, text in self.cache.get_many(keys).items():
            answer = _decode(model, text)
            if answer is not None:
                results[key] = answer
        missing: dict[str, T] = {}
        for key, item in zip(keys, items, strict=True):
            if key not in results and key not in missing:
                missing[key] = item
        self.stats.hits += sum(1 for k in keys if k in results)
        self.last_served = [k in results for k in keys]
        self.stats.misses += len(missing)
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            answers = run([item for _, item in chunk])
            self._store(kind, [key for key, _ in chunk], answers)
            results.update(zip((key for key, _ in chunk), answers, strict=True))
        return [results[k] for k in keys]

    def _store(self, kind: str, keys: list[str], answers: list[M]) -> None:
        """Commit one chunk's successful answers; a short answer list stores nothing."""
        if len(answers) != len(keys):
            raise RuntimeError(
                f"{type(self.inner).__name__} returned {len(answers)} results for "
                f"{len(keys)} requests; nothing of this batch was cached"
            )
        good = [
            (key, answer.model_dump_json())
            for key, answer in zip(keys, answers, strict=True)
            if not _failed(answer)
        ]
        self.stats.failed += len(keys) - len(good)
        if good:
            self.cache.put_many(self.model_id, kind, good)

    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        run = partial(self.inner.generate_chat, params=params)
        return self._cached("chat", conversations, run, Generation, params)

    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        run = partial(self.inner.generate_text, params=params)
        return self._cached("text", prompts, run, Generation, params)

    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        return self._cached("score", requests, self.inner.score_choices, ChoiceScore)

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return self.inner.endpoint_stats()

    def close(self) -> None:
        self.inner.close()
        self.cache.close()


def _failed(answer: BaseModel) -> bool:
    return bool(getattr(answer, "failed", False))


def _key_data(item: Any) -> Any:
    """What of a request enters its cache key: a scoring request as JSON, text as it is."""
    return item.model_dump(mode="json") if isinstance(item, BaseModel) else item
