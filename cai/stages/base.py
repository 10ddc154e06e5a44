"""What every stage is made of: its declaration, the run it works in, and its chunk worker.

A `Stage` declares what it reads (`Input`) and writes (`Output`). The runner checks those
declarations for every listed stage before any model loads: an output must lie inside the run
directory, and an input no earlier stage of the run makes must already be there. The stage's
own `check` then covers what only it knows (settings of earlier results, its constitution).

A stage's chunks run through an executor (`cai.executors`): the stage hands it a picklable
`WorkerRecipe` whose `build(backend)` makes a `CountedWorker`, the same object in this process
and in a Ray actor, so the rows (and the token counts they carry) are the same either way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from cai.backends import Backend, BackendSpec
from cai.budget import TokenBudget
from cai.errors import CaiError
from cai.executors import Executor, LocalExecutor
from cai.executors.base import Chunk, ChunkWorker, Rows, WorkerRecipe, backend_counters
from cai.executors.ray import import_ray
from cai.jobs import ChunkedJob, ChunkGate, JobStats
from cai.ledger import attach_chunk_tokens, take_chunk_tokens
from cai.templates import TemplateSet


class StageContext(Protocol):
    """What a stage may ask of the run it is part of (`cai.pipeline.context.RunContext`)."""

    config: Any
    output_dir: Path
    counts: dict[str, int]
    loaded: dict[str, Any]
    provenance: dict[str, Any] | None
    policy_backend: Backend | None
    judge_backend: Backend | None

    @property
    def runs_here(self) -> bool: ...
    @property
    def samples_dir(self) -> Path: ...
    @property
    def judgments_dir(self) -> Path: ...
    def executor(self) -> Executor: ...
    def policy(self) -> Backend: ...
    def judge(self) -> Backend: ...
    def rel(self, path: str | Path | None) -> str | None: ...
    def gate(self, stage: str) -> TokenBudget: ...
    def finish(self, gate: TokenBudget, stopped: bool, total: int | None) -> None: ...
    def run_ledger(self) -> Any: ...


@dataclass(frozen=True)
class Input:
    """Something a stage reads: made by `made_by` when that stage is in the run, else already
    there. `check` raises the CaiError that says what is missing and returns a count (or None)
    the stage reuses."""

    name: str
    made_by: str | None
    check: Callable[[StageContext], int | None]


@dataclass(frozen=True)
class Output:
    """Something a stage writes; it must lie inside the run's output directory."""

    name: str
    path: Callable[[StageContext], Path]
    key: str
    """The setting that moves it (named in the error)."""
    fix: str


@dataclass(frozen=True)
class Stage:
    """One stage: its declared inputs and outputs, its check, its work and its summary type."""

    name: str
    reads: tuple[Input, ...]
    writes: tuple[Output, ...]
    check: Callable[[StageContext], None]
    run: Callable[[StageContext], BaseModel]
    summary: type[BaseModel]


def check_executor(ctx: StageContext) -> None:
    """A Ray run on a machine without Ray fails here, before anything starts or is written."""
    if ctx.config.executor.kind == "ray":
        import_ray()


# ---- the chunk worker and its recipe ---------------------------------------------------------
class CountedWorker(ChunkWorker):
    """A worker whose rows carry the tokens its backends spent on the chunk (`cai.ledger`)."""

    backends: list[Backend]

    @abstractmethod
    def work(self, chunk: Chunk) -> list[BaseModel]:
        """The records of one chunk, in item order."""

    def process(self, chunk: Chunk) -> Rows:
        rows = [record.model_dump(mode="json") for record in self.work(chunk)]
        return attach_chunk_tokens(rows, take_chunk_tokens(self.backends))

    def own_counters(self) -> dict[str, int]:
        """The model requests this worker made (besides its backends' call cache counts)."""
        return {}

    def endpoints(self) -> list[dict[str, Any]]:
        return [entry for backend in self.backends for entry in backend.endpoint_stats()]

    def counters(self) -> dict[str, int]:
        totals = dict(self.own_counters())
        for backend in self.backends:
            for key, value in backend_counters(backend).items():
                totals[key] = totals.get(key, 0) + value
        return totals


class RecipeError(CaiError, RuntimeError):
    """A worker cannot be rebuilt where it runs (templates differ on that node, ...)."""


@dataclass
class TemplatedRecipe(WorkerRecipe):
    """A recipe carrying a constitution and prompt templates.

    The constitution's content travels, so every actor works against the same principles; the
    templates travel as their directory and the fingerprint of what the driver loaded, and an
    actor whose templates differ refuses to start.
    """

    constitution: Any
    templates_dir: str | None
    templates_fingerprint: str

    @staticmethod
    def template_fields(templates: TemplateSet) -> dict[str, Any]:
        directory = str(templates.user_dir) if templates.user_dir is not None else None
        return {"templates_dir": directory, "templates_fingerprint": templates.fingerprint()}

    def templates(self) -> TemplateSet:
        """The templates the driver loaded, rebuilt here; refused when their content differs."""
        templates = TemplateSet(self.templates_dir)
        if templates.fingerprint() != self.templates_fingerprint:
            raise RecipeError(
                "the prompt templates here differ from the ones the run started with "
                f"(fingerprint {templates.fingerprint()} here, {self.templates_fingerprint} "
                "on the driver)",
                file=self.templates_dir,
                fix="Install the same cai version and template directory on every node of the "
                "Ray cluster.",
            )
        return templates


def run_chunks(
    recipe: WorkerRecipe,
    fingerprint: Callable[[str], dict[str, Any]],
    items: Iterable[Any],
    work_dir: str | Path,
    *,
    desc: str,
    total: int | None = None,
    chunk_size: int = 16,
    overwrite: bool = False,
    executor: Executor | None = None,
    gate: ChunkGate | None = None,
    backend: Backend | BackendSpec | None = None,
    worker: ChunkWorker | None = None,
) -> JobStats:
    """A stage's resumable job: workers from `recipe` (or the given `backend` / `worker`) on
    `executor` (default: this process), the job keyed by `fingerprint(model_id)`."""
    given = backend if isinstance(backend, Backend) else None
    with (executor or LocalExecutor()).open(recipe, backend=given, worker=worker) as session:
        settings = fingerprint(session.model_id)
        with ChunkedJob(work_dir, settings, chunk_size=chunk_size, overwrite=overwrite) as job:
            return job.run(
                items, total=total, desc=desc, unit="prompt", executor=session, gate=gate
            )
