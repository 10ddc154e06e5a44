"""The worker recipes of the sample, judge and revise stages.

A recipe holds what a stage's chunk function needs besides the backend, in picklable form:
the settings (pydantic models), the constitution itself (its content travels, so every actor
judges against the same principles), and the template directory with the fingerprint of
the templates the driver loaded (an actor on a node whose templates differ refuses to
start). `build(backend)` rebuilds the object the local path uses:

    SampleRecipe  -> SampleWorker: sample_chunk(backend, chunk, config)
    JudgeRecipe   -> JudgeWorker:  judge_chunk(PairwiseJudge(backend, ...), chunk)
    ReviseRecipe  -> ReviseWorker: revise_batch(CritiqueReviser(backend, ...), chunk, params)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from cai.backends import Backend, BackendSpec, GenerationParams
from cai.errors import CaiError
from cai.executors.base import Chunk, ChunkWorker, Rows, WorkerRecipe, backend_counters

if TYPE_CHECKING:
    from cai.constitution import Constitution
    from cai.judge.compare import JudgeConfig, PairwiseJudge
    from cai.judge.critique import CritiqueConfig, CritiqueReviser
    from cai.judge.panel import PanelJudge
    from cai.sample import SampleConfig
    from cai.templates import TemplateSet


class RecipeError(CaiError, RuntimeError):
    """A worker cannot be rebuilt where it runs (templates differ on that node, ...)."""


def _templates(directory: str | None, fingerprint: str) -> TemplateSet:
    """The templates the driver loaded, rebuilt here; refused when their content differs."""
    from cai.templates import TemplateSet

    templates = TemplateSet(directory)
    if templates.fingerprint() != fingerprint:
        raise RecipeError(
            "the prompt templates here differ from the ones the run started with "
            f"(fingerprint {templates.fingerprint()} here, {fingerprint} on the driver)",
            file=directory,
            fix="Install the same cai version and template directory on every node of the "
            "Ray cluster.",
        )
    return templates


def _templates_dir(templates: TemplateSet) -> str | None:
    return str(templates.user_dir) if templates.user_dir is not None else None


# ---- sample ----------------------------------------------------------------------------------
class SampleWorker(ChunkWorker):
    def __init__(self, backend: Backend, config: SampleConfig) -> None:
        from cai.ledger import counting

        self.backend = counting(backend, "sample")
        self.config = config
        self.model_id = backend.model_id

    def process(self, chunk: Chunk) -> Rows:
        from cai.ledger import attach_chunk_tokens, take_chunk_tokens
        from cai.sample import sample_chunk

        rows = [s.model_dump(mode="json") for s in sample_chunk(self.backend, chunk, self.config)]
        return attach_chunk_tokens(rows, take_chunk_tokens([self.backend]))

    def counters(self) -> dict[str, int]:
        return backend_counters(self.backend)


@dataclass
class SampleRecipe(WorkerRecipe):
    config: SampleConfig

    stage: ClassVar[str] = "sample"

    def build(self, backend: Backend) -> SampleWorker:
        return SampleWorker(backend, self.config)


# ---- judge -----------------------------------------------------------------------------------
class JudgeWorker(ChunkWorker):
    """One judge (a `PairwiseJudge`) or a panel of them (`cai.judge.panel.PanelJudge`)."""

    def __init__(self, judge: PairwiseJudge | PanelJudge) -> None:
        from cai.judge.stage import count_judge_tokens, judge_identity

        self.judge = judge
        self.backends = count_judge_tokens(judge)
        self.model_id = judge_identity(judge)

    def process(self, chunk: Chunk) -> Rows:
        from cai.judge.stage import judge_chunk
        from cai.ledger import attach_chunk_tokens, take_chunk_tokens

        rows = [j.model_dump(mode="json") for j in judge_chunk(self.judge, chunk)]
        return attach_chunk_tokens(rows, take_chunk_tokens(self.backends))

    def counters(self) -> dict[str, int]:
        totals = {
            "requests_scored": self.judge.requests_scored,
            "rationales_generated": self.judge.rationales_generated,
        }
        for backend in self.backends:
            for key, value in backend_counters(backend).items():
                totals[key] = totals.get(key, 0) + value
        return totals


@dataclass
class JudgeRecipe(WorkerRecipe):
    constitution: Constitution
    templates_dir: str | None
    templates_fingerprint: str
    config: JudgeConfig

    stage: ClassVar[str] = "judge"

    @classmethod
    def from_parts(
        cls,
        backend: BackendSpec | None,
        constitution: Constitution,
        templates: TemplateSet,
        config: JudgeConfig,
    ) -> JudgeRecipe:
        return cls(
            backend=backend,
            constitution=constitution,
            templates_dir=_templates_dir(templates),
            templates_fingerprint=templates.fingerprint(),
            config=config,
        )

    @classmethod
    def from_judge(cls, judge: PairwiseJudge, backend: BackendSpec | None = None) -> JudgeRecipe:
        return cls.from_parts(backend, judge.constitution, judge.templates, judge.config)

    def build(self, backend: Backend) -> JudgeWorker:
        from cai.judge.compare import PairwiseJudge

        templates = _templates(self.templates_dir, self.templates_fingerprint)
        return JudgeWorker(PairwiseJudge(backend, self.constitution, templates, self.config))


# ---- revise ----------------------------------------------------------------------------------
class ReviseWorker(ChunkWorker):
    """Critique -> revision chains; every generation is counted under the `revise` stage."""

    def __init__(self, reviser: CritiqueReviser, response: GenerationParams) -> None:
        from cai.ledger import counting

        reviser.backend = counting(reviser.backend, "revise")
        self.reviser = reviser
        self.response = response
        self.model_id = reviser.backend.model_id

    def process(self, chunk: Chunk) -> Rows:
        from cai.ledger import attach_chunk_tokens, take_chunk_tokens
        from cai.revise import revise_batch

        chains = revise_batch(self.reviser, chunk, self.response)
        rows = [c.model_dump(mode="json") for c in chains]
        return attach_chunk_tokens(rows, take_chunk_tokens([self.reviser.backend]))

    def counters(self) -> dict[str, int]:
        stats = self.reviser.stats
        return {
            "critique_calls": int(stats.get("critique_calls", 0)),
            "revision_calls": int(stats.get("revision_calls", 0)),
            **backend_counters(self.reviser.backend),
        }


@dataclass
class ReviseRecipe(WorkerRecipe):
    constitution: Constitution
    templates_dir: str | None
    templates_fingerprint: str
    critique: CritiqueConfig
    response: GenerationParams

    stage: ClassVar[str] = "revise"

    @classmethod
    def from_parts(
        cls,
        backend: BackendSpec | None,
        constitution: Constitution,
        templates: TemplateSet,
        critique: CritiqueConfig,
        response: GenerationParams,
    ) -> ReviseRecipe:
        return cls(
            backend=backend,
            constitution=constitution,
            templates_dir=_templates_dir(templates),
            templates_fingerprint=templates.fingerprint(),
            critique=critique,
            response=response,
        )

    def build(self, backend: Backend) -> ReviseWorker:
        from cai.judge.critique import CritiqueReviser

        templates = _templates(self.templates_dir, self.templates_fingerprint)
        reviser = CritiqueReviser(backend, self.constitution, templates, self.critique)
        return ReviseWorker(reviser, self.response)
