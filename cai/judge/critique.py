"""SL-CAI critique -> revision rounds, batched across prompts.

Each round samples one principle per prompt (seeded by prompt id and round, so a rerun picks
the same ones) from the principles that carry a critique and a revision request, asks the model to critique the latest answer against it, then to rewrite
that answer in the light of the critique. All prompts of a batch move through a round
together: one generate call for every critique, one for every revision, so the engine can
batch and the prefix cache can share what the prompts have in common.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cai.backends.base import (
    Backend,
    ContextOverflowError,
    Generation,
    GenerationParams,
    Message,
)
from cai.constitution import Constitution, FewShotExample, Principle, sample_principles
from cai.constitution.usage import require_use
from cai.records import RevisionRound
from cai.templates import RenderedPrompt, TemplateError, TemplateSet

MAX_ROUNDS = 16


class CritiqueConfig(BaseModel):
    """How many rounds, which principles, and how the model samples critiques and revisions."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(1, ge=1, le=MAX_ROUNDS)
    seed: int = 0
    weighted: bool = False
    """Sample principles in proportion to their weight instead of uniformly."""
    max_examples: int = Field(2, ge=0)
    """Few-shot examples per prompt, from the round's principle's `examples`."""
    critique: GenerationParams = GenerationParams(temperature=0.7, max_tokens=256)
    revision: GenerationParams = GenerationParams(temperature=0.7, max_tokens=256)


class ChainStart(BaseModel):
    """A prompt and the answer that the first round critiques."""

    key: str
    conversation: list[Message]
    response: str
    finish_reason: str = "stop"


class RoundResult(BaseModel):
    """One round: the principle, the critique, the revision, and how each generation ended."""

    round: int
    principle_id: str
    critique: str
    critique_finish_reason: str
    revision: str
    revision_finish_reason: str
    answer_before: str


class RevisionChain(BaseModel):
    """A prompt's initial answer and every round that followed."""

    key: str
    conversation: list[Message]
    initial_response: str
    initial_finish_reason: str = "stop"
    rounds: list[RoundResult] = Field(default_factory=list)
    failure: str | None = None
    """Why the chain stopped before its last round (for example a context overflow)."""

    @property
    def final_response(self) -> str:
        return self.rounds[-1].revision if self.rounds else self.initial_response

    @property
    def principles(self) -> list[str]:
        return [r.principle_id for r in self.rounds]

    def revision_rounds(self) -> list[RevisionRound]:
        return [
            RevisionRound(principle_id=r.principle_id, critique=r.critique, revision=r.revision)
            for r in self.rounds
        ]


def _examples_for(principle: Principle, limit: int) -> list[FewShotExample]:
    """The principle's own worked examples that have both a critique and a revision.

    Only its own: the templates show the round's critique and revision requests above each
    example, so another principle's example would answer a request it was not written for.
    """
    usable = [e for e in principle.examples or [] if e.critique and e.revision]
    return usable[: max(limit, 0)]


def _chat(rendered: RenderedPrompt, templates: TemplateSet, template: str) -> list[Message]:
    """The messages of a critique or revision prompt, which must not set a prefix."""
    if getattr(rendered, "assistant_prefix", ""):
        raise TemplateError(
            f"the {template!r} template sets an assistant_prefix, but critiques and revisions "
            "are generated as chat turns, which cannot start from a prefix",
            file=templates.source_path(template),
            fix="Move that text into the last user message of the template.",
        )
    return list(rendered.messages)


class CritiqueReviser:
    """Runs r critique -> revision rounds over a batch of answers through one backend."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: TemplateSet,
        config: CritiqueConfig,
    ):
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.config = config
        self.stats = {"critique_calls": 0, "revision_calls": 0, "overflows": 0}
        # Rounds draw only from principles with a critique and a revision request; a
        # constitution with none is an error that names the file, before any generation.
        require_use(constitution, "revise")

    def principle_for(self, key: str, round_index: int) -> Principle:
        """The principle of one round, deterministic in (constitution, key, round, seed)."""
        return sample_principles(
            self.constitution,
            key=f"{key}:{round_index}",
            k=1,
            seed=self.config.seed,
            weighted=self.config.weighted,
            use="revise",
        )[0]

    def _params(self, params: GenerationParams) -> GenerationParams:
        if params.seed is None:
            params = params.model_copy(update={"seed": self.config.seed})
        return params.model_copy(update={"n": 1})

    def generate_batch(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation | None]:
        """One batch call; on a context overflow, retry one by one and mark the misfits None."""
        if not conversations:
            return []
        try:
            return list(self.backend.generate_chat(conversations, params))
        except ContextOverflowError:
            out: list[Generation | None] = []
            for conversation in conversations:
                try:
                    out.append(self.backend.generate_chat([conversation], params)[0])
                except ContextOverflowError:
                    self.stats["overflows"] += 1
                    out.append(None)
            return out

    def revise(self, starts: list[ChainStart]) -> list[RevisionChain]:
        """Run every round for every start; chains that overflow stop early with a failure."""
        chains = [
            RevisionChain(
                key=s.key,
                conversation=s.conversation,
                initial_response=s.response,
                initial_finish_reason=s.finish_reason,
            )
            for s in starts
        ]
        for round_index in range(self.config.rounds):
            active = [c for c in chains if c.failure is None]
            if not active:
                break
            self._round(active, round_index)
        return chains

    def _prompt(
        self, template: str, chain: RevisionChain, principle: Principle, examples, **extra: str
    ) -> list[Message]:
        rendered = self.templates.render(
            template,
            conversation=chain.conversation,
            response=chain.final_response,
            principle=principle,
            examples=examples,
            **extra,
        )
        return _chat(rendered, self.templates, template)

    def _round(self, active: list[RevisionChain], round_index: int) -> None:
        """One round for every active chain: one critique batch, then one revision batch."""
        principles = [self.principle_for(c.key, round_index) for c in active]
        examples = [_examples_for(p, self.config.max_examples) for p in principles]
        planned = list(zip(active, principles, examples, strict=True))
        self.stats["critique_calls"] += 1
        critiques = self.generate_batch(
            [self._prompt("critique", c, p, ex) for c, p, ex in planned],
            self._params(self.config.critique),
        )
        pending = []
        for (chain, principle, ex), critique in zip(planned, critiques, strict=True):
            if critique is None:
                chain.failure = f"round {round_index}: critique prompt exceeds the context"
                continue
            pending.append((chain, principle, ex, critique))
        revise_prompts = [
            self._prompt("revise", c, p, ex, critique=critique.texts[0].strip())
            for c, p, ex, critique in pending
        ]
        if revise_prompts:
            self.stats["revision_calls"] += 1
        revisions = self.generate_batch(revise_prompts, self._params(self.config.revision))
        for (chain, principle, _, critique), revision in zip(pending, revisions, strict=True):
            if revision is None:
                chain.failure = f"round {round_index}: revision prompt exceeds the context"
                continue
            chain.rounds.append(
                RoundResult(
                    round=round_index,
                    principle_id=principle.id,
                    critique=critique.texts[0].strip(),
                    critique_finish_reason=critique.finish_reasons[0],
                    revision=revision.texts[0].strip(),
                    revision_finish_reason=revision.finish_reasons[0],
                    answer_before=chain.final_response,
                )
            )
