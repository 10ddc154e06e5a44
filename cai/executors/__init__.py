"""Executors: where a stage's chunks are processed (this process, or a pool of Ray actors).

    base.py         the interface (Executor, ExecutorSession, WorkerRecipe, ChunkWorker, reports)
    config.py       the `executor:` setting (ExecutorConfig)
    local.py        LocalExecutor: in this process, in order (the default)
    ray.py          RayExecutor: a pool of Ray actors, one backend each (`pip install 'cai[ray]'`),
                    with ray_session.py (the pool, one stage's session), ray_actor.py (inside
                    an actor) and ray_base.py (what both share)

The recipes themselves belong to the stages (`cai/stages/`).

Whatever the executor, the driver is the only writer of results (`ChunkedJob.run`), so
resume, the call cache and every output file are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cai.executors.base import (
    ActorReport,
    ChunkWorker,
    Executor,
    ExecutorReport,
    ExecutorSession,
    WorkerRecipe,
)
from cai.executors.config import ExecutorConfig, ExecutorKind
from cai.executors.local import LocalExecutor


def make_executor(config: ExecutorConfig | None = None) -> Executor:
    """The executor `config` describes (Ray is imported only for `kind: ray`)."""
    if config is None or config.kind == "local":
        return LocalExecutor()
    from cai.executors.ray import RayExecutor

    return RayExecutor(config)


@contextmanager
def executor_for(
    config: ExecutorConfig | None, given: Executor | None = None
) -> Iterator[Executor]:
    """`given` as is (its owner closes it), or one made from `config` and closed on exit."""
    if given is not None:
        yield given
        return
    built = make_executor(config)
    try:
        yield built
    finally:
        built.close()


__all__ = [
    "ActorReport",
    "ChunkWorker",
    "Executor",
    "ExecutorConfig",
    "ExecutorKind",
    "ExecutorReport",
    "ExecutorSession",
    "LocalExecutor",
    "WorkerRecipe",
    "executor_for",
    "make_executor",
]
