"""The local executor: every chunk in this process, one after another, in order."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from cai.backends import Backend, make_backend
from cai.errors import CaiError
from cai.executors.base import (
    Chunk,
    ChunkWorker,
    Executor,
    ExecutorReport,
    ExecutorSession,
    Ledger,
    Rows,
    WorkerRecipe,
    counter_delta,
)

LOCAL = "local"


class LocalSession(ExecutorSession):
    kind = "local"
    label = ""

    def __init__(self, worker: ChunkWorker, owned: Backend | None = None) -> None:
        self.worker = worker
        self.model_id = worker.model_id
        self._owned = owned
        self._ledger = Ledger("local", actors=1)
        self._ledger.actor(LOCAL)

    def map(self, chunks: Iterable[tuple[int, Chunk]]) -> Iterator[tuple[int, Rows]]:
        self._ledger.start()
        try:
            for index, chunk in chunks:
                before = self.worker.counters()
                started = time.perf_counter()
                rows = self.worker.process(chunk)
                seconds = time.perf_counter() - started
                delta = counter_delta(before, self.worker.counters())
                self._ledger.record(LOCAL, len(chunk), seconds, delta, self.worker.endpoints())
                yield index, rows
        finally:
            self._ledger.stop()

    def report(self) -> ExecutorReport:
        return self._ledger.report()

    def close(self, failed: bool = False) -> None:
        if self._owned is not None:
            owned, self._owned = self._owned, None
            owned.close()


class LocalExecutor(Executor):
    """Today's behaviour: the worker lives in this process and takes the chunks in order."""

    kind = "local"

    def open(
        self,
        recipe: WorkerRecipe,
        *,
        backend: Backend | None = None,
        worker: ChunkWorker | None = None,
    ) -> LocalSession:
        if worker is not None:
            return LocalSession(worker)
        if backend is not None:
            return LocalSession(recipe.build(backend))
        if recipe.backend is None:
            raise CaiError(
                f"the {recipe.stage} stage has neither a backend nor a backend spec to build one",
                fix="Pass a backend, or a recipe whose `backend` is a BackendSpec.",
            )
        built = make_backend(recipe.backend)
        try:
            return LocalSession(recipe.build(built), owned=built)
        except BaseException:
            built.close()
            raise
