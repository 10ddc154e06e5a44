"""The sample stage: n policy responses per prompt, streamed, chunked and resumable.

A prompt's responses depend only on the run seed and the prompt itself: not on the chunk it
fell in, the prompts around it, or whether the run was interrupted and resumed. Every backend
applies a seed per request (vLLM seeds each request of a batch on its own), so the default
`seed_mode: shared` sends a whole chunk as one batched request with the run seed.
`seed_mode: per_prompt` sends one request per prompt with a seed derived from (seed,
prompt_id), for servers that seed per batch; it is several times slower.

Reads the prompts (`prompts:`); writes `samples/`, one `Sample` per prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.backends import BackendSpec
from cai.backends.base import Backend, GenerationParams
from cai.executors import Executor
from cai.executors.base import Chunk, WorkerRecipe
from cai.jobs import JOB_FILE, ChunkGate, check_fingerprint, iter_job_results, job_item_count
from cai.ledger import counting
from cai.records import PromptRecord, Sample
from cai.samples_input import iter_sample_rows
from cai.stages.base import (
    CountedWorker,
    Input,
    Output,
    Stage,
    StageContext,
    check_executor,
    run_chunks,
)
from cai.stages.summary import JobSummary, Shown
from cai.tables import count_prompts, iter_prompts


class SampleConfig(BaseModel):
    """How responses are sampled (everything here changes the output)."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(2, ge=1, description="responses per prompt")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    seed: int = 0
    seed_mode: Literal["per_prompt", "shared"] = Field(
        "shared",
        description="shared: the whole chunk in one batched request with `seed`; cai's "
        "backends seed each request on its own, so responses depend only on (seed, prompt). "
        "per_prompt: one request per prompt, seeded from (seed, prompt_id), for servers that "
        "seed per batch (several times slower).",
    )
    system_prompt: str | None = Field(
        None, description="prepended as a system turn when the prompt has none"
    )


class SampleSummary(JobSummary):
    prompts: int
    prompts_sampled_now: int
    prompts_resumed: int
    responses: int
    """Responses in the whole job (not counted when the budget stopped it)."""
    truncated_responses: int
    samples_dir: str | None = None

    def lines(self, shown: Shown) -> list[str]:
        if self.stopped:
            return [f"sampled: {self.prompts} prompts before the token budget stopped it"]
        return [
            f"sampled: {self.prompts} prompts ({self.prompts_resumed} resumed), "
            f"{self.responses} responses, {self.truncated_responses} hit max_tokens",
            *self.executor_lines(),
        ]

    def requests_made(self) -> str:
        return f"{self.prompts_sampled_now} generation requests"


def prompt_seed(seed: int, prompt_id: str) -> int:
    """A 31-bit seed for one prompt, stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _with_system(record: PromptRecord, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [dict(m) for m in record.prompt]
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def sample_chunk(
    backend: Backend, records: list[PromptRecord], config: SampleConfig
) -> list[Sample]:
    """Sample one chunk: per prompt (own seed) or as one batch (shared seed)."""
    if config.seed_mode == "shared":
        batches = [(records, config.seed)]
    else:
        batches = [([r], prompt_seed(config.seed, r.prompt_id)) for r in records]
    out = []
    for batch, seed in batches:
        params = GenerationParams(
            n=config.n,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=seed,
        )
        conversations = [_with_system(r, config.system_prompt) for r in batch]
        generations = backend.generate_chat(conversations, params)
        out.extend(
            Sample(
                prompt_id=record.prompt_id,
                prompt=record.prompt,
                responses=list(generation.texts),
                finish_reasons=list(generation.finish_reasons),
                policy_model=backend.model_id,
                seed=seed,
            )
            for record, generation in zip(batch, generations, strict=True)
        )
    return out


def sample_fingerprint(policy_model: str, config: SampleConfig) -> dict:
    """The sampling job's settings; the prompts themselves are covered per chunk by content."""
    return {"stage": "sample", "policy_model": policy_model, "config": config.model_dump(mode="json")}


class SampleWorker(CountedWorker):
    def __init__(self, backend: Backend, config: SampleConfig) -> None:
        self.backend = counting(backend, "sample")
        self.backends = [self.backend]
        self.config = config
        self.model_id = backend.model_id

    def work(self, chunk: Chunk) -> list[Sample]:
        return sample_chunk(self.backend, chunk, self.config)


@dataclass
class SampleRecipe(WorkerRecipe):
    config: SampleConfig

    stage: ClassVar[str] = "sample"

    def build(self, backend: Backend) -> SampleWorker:
        return SampleWorker(backend, self.config)


def sample_prompts(
    backend: Backend | BackendSpec,
    prompts: Iterable[PromptRecord],
    work_dir: str | Path,
    config: SampleConfig,
    *,
    total: int | None = None,
    chunk_size: int = 16,
    overwrite: bool = False,
    executor: Executor | None = None,
    gate: ChunkGate | None = None,
) -> SampleSummary:
    """Sample every prompt into `work_dir` (resumable; rerun skips finished chunks).

    Each chunk is keyed by the content of its prompts (ids and messages), so a prompts file
    edited, shrunk or grown between runs recomputes exactly the chunks that changed.
    `backend` is a backend to use here, or the spec of one; `executor` (default: local, in
    this process) decides where chunks are processed: a Ray executor builds the backend
    from the spec in each of its actors. The files written are the same either way.
    `gate` (a token budget) may stop the job at a chunk boundary; a rerun resumes it.
    """
    spec = None if isinstance(backend, Backend) else backend
    stats = run_chunks(
        SampleRecipe(backend=spec, config=config),
        lambda model_id: sample_fingerprint(model_id, config),
        prompts,
        work_dir,
        desc="sampling",
        total=total,
        chunk_size=chunk_size,
        overwrite=overwrite,
        executor=executor,
        gate=gate,
        backend=backend,
    )
    responses = truncated = 0
    for sample in [] if stats.stopped else iter_samples(work_dir):
        responses += len(sample.responses)
        truncated += sum(1 for r in sample.finish_reasons if r == "length")
    return SampleSummary(
        prompts=stats.items_total,
        prompts_sampled_now=stats.items_processed,
        prompts_resumed=stats.items_done_before,
        responses=responses,
        truncated_responses=truncated,
        seconds=round(stats.seconds, 3),
        executor=stats.executor,
        stopped=stats.stopped,
    )


def iter_samples(path: str | Path) -> Iterator[Sample]:
    """Stream samples from a sampling work directory, or from any table of responses.

    Besides cai's own samples (a `cai sample` directory or its JSONL rows), a file or
    save_to_disk dataset may hold `prompt` (text or messages) plus `responses`, or a TRL / HH
    preference dataset (`chosen` / `rejected`) to relabel; see `cai.samples_input`.
    """
    path = Path(path)
    if path.is_dir() and (path / JOB_FILE).exists():
        for row in iter_job_results(path, "sample"):
            yield Sample.model_validate(row)
        return
    yield from iter_sample_rows(path)


def count_samples(path: str | Path) -> int:
    """How many samples `iter_samples(path)` yields (a finished job knows; files are read)."""
    path = Path(path)
    if path.is_dir() and (path / JOB_FILE).exists():
        return job_item_count(path)
    return sum(1 for _ in iter_samples(path))


# ---- the stage -------------------------------------------------------------------------------
def _prompts_ready(ctx: StageContext) -> int:
    """Every prompt read and validated (an empty or unreadable file is an error)."""
    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    return count_prompts(source.path, source.column, source.limit)


PROMPTS = Input("prompts", made_by=None, check=_prompts_ready)
SAMPLES_OUT = Output(
    "samples",
    path=lambda ctx: ctx.samples_dir,
    key="samples",
    fix="Drop `samples:` (samples then go to output_dir/samples), or drop the sample stage to "
    "judge those samples as they are.",
)


def check(ctx: StageContext) -> None:
    check_executor(ctx)
    if not ctx.config.overwrite:
        fingerprint = sample_fingerprint("", ctx.config.sample)
        check_fingerprint(
            ctx.samples_dir, fingerprint, ctx.config.chunk_size, ignore=["policy_model"]
        )


def run(ctx: StageContext) -> SampleSummary:
    source = ctx.config.prompts
    assert source is not None  # checked by PipelineConfig
    gate = ctx.gate("sample")
    summary = sample_prompts(
        ctx.policy() if ctx.runs_here else ctx.config.policy,
        iter_prompts(source.path, source.column, source.limit),
        ctx.samples_dir,
        ctx.config.sample,
        total=ctx.counts.get("prompts"),
        chunk_size=ctx.config.chunk_size,
        overwrite=ctx.config.overwrite,
        executor=ctx.executor(),
        gate=gate,
    )
    ctx.finish(gate, summary.stopped, ctx.counts.get("prompts"))
    return summary.model_copy(
        update={"samples_dir": ctx.rel(ctx.samples_dir), "tokens": gate.ledger.total("sample")}
    )


STAGE = Stage("sample", (PROMPTS,), (SAMPLES_OUT,), check, run, SampleSummary)
