"""Pairwise and k-wise AI preference judgments against a constitution.

For each pair and each of m principles (sampled per pair, seeded), the judge scores the
answer labels in both orders with one scored token per order, batched across everything it
is given. The label is a probability, never a sampled letter:

    p_a = (P_AB("A") + P_BA("B")) / 2

i.e. the probability given to response a's text when shown first and when shown second, so a
judge that always prefers the first slot lands exactly on 0.5. Principles are averaged
(`aggregation: mean`), or consulted tier by tier (`aggregation: tiered`: the highest tier
whose debiased confidence |p - 0.5| reaches `tier_margin` decides, see `combine_tiers`). With
chain of thought a greedy rationale is generated first and the answer probability, clamped
into a band, is scored after it. Anything that yields no label (empty response, unusable
rationale, context overflow) is a recorded failure with the raw text, never a label.

For servers that return no log-probs, `method: verdict` reads the label from the judge's
written answer instead (a hard 1 or 0 per order, so 1, 0.5 or 0 per pair); an answer that
names no label is an `unparseable` failure (`cai.judge.written`).
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from cai.backends.base import (
    Backend,
    ContextOverflowError,
    Message,
)
from cai.constitution import Constitution, Principle, sample_principles
from cai.constitution.models import Aggregation
from cai.constitution.usage import require_use, usable_principles
from cai.judge.parse import JudgeFailure
from cai.judge.ranking import Comparison, bradley_terry
from cai.judge.written import (
    JudgeSlot,
    Order,
    call_isolating_overflow,
    overflow_failure,
    write_answers,
)
from cai.records import stable_id
from cai.templates import TemplateData, TemplateSet, template_data


class JudgeConfig(BaseModel):
    """Every setting that changes a judgment (all of it goes into the resume fingerprint)."""

    model_config = ConfigDict(extra="forbid")

    principles_per_pair: int | None = Field(
        None, ge=1, description="m principles per pair; None = the constitution's default."
    )
    weighted_principles: bool = False
    seed: int = 0
    both_orders: bool = True
    chain_of_thought: bool = False
    method: Literal["logprob", "verdict"] = Field(
        "logprob",
        description="logprob: the label is the answer tokens' probability (soft). verdict: "
        "the judge writes its reasoning and names an answer, which is parsed into a hard "
        "label (for servers and APIs that return no log-probs); an answer that names no "
        "label is recorded as `unparseable`, counted, and never guessed.",
    )
    cot_band: tuple[float, float] = (0.4, 0.6)
    cot_max_tokens: int = Field(256, ge=1)
    allow_truncated_rationale: bool = False
    allow_partial: bool = Field(
        False,
        description="Label a pair when some principles failed but others gave a score; "
        "by default any failure leaves the pair unlabeled (and counted).",
    )
    labels: tuple[str, str] = ("A", "B")
    ranking_prior: float = Field(
        0.01,
        ge=0.0,
        description="Bradley-Terry pseudo-wins per direction of each pair (k > 2); keeps "
        "scores finite when one response wins every comparison outright.",
    )
    aggregation: Aggregation | None = Field(
        None,
        description="mean | tiered; None = the constitution's `defaults.aggregation`.",
    )
    tier_margin: float | None = Field(
        None,
        ge=0.0,
        lt=0.5,
        description="tiered: a tier decides when |p - 0.5| >= this; None = the "
        "constitution's `defaults.tier_margin`.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # Unset newer settings stay out of the dump, so the resume fingerprint of a run made
        # before they existed still matches (the constitution's hash covers its defaults).
        data = handler(self)
        if isinstance(data, dict):
            for name in ("aggregation", "tier_margin"):
                if data.get(name) is None:
                    data.pop(name, None)
            if data.get("method") == "logprob":
                data.pop("method")
        return data

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        low, high = self.cot_band
        if not 0.0 <= low <= 0.5 <= high <= 1.0:
            raise ValueError(
                f"cot_band {self.cot_band} must satisfy 0 <= low <= 0.5 <= high <= 1 "
                "(it bounds how confident a chain-of-thought label may be)"
            )
        if self.labels[0] == self.labels[1]:
            raise ValueError("the two answer labels must differ")
        return self


class PairToJudge(BaseModel):
    key: str
    conversation: list[Message]
    response_a: str
    response_b: str


class OrderScore(BaseModel):
    """One scored order: which text sat in which slot, and the answer-token numbers."""

    order: Order
    prob_a: float
    """Probability that response a is better, read from this order (after any CoT clamp)."""
    label_probs: list[float]
    label_logprobs: list[float]
    rationale: str | None = None
    stated_label: str | None = None


class PrincipleJudgment(BaseModel):
    principle: str
    orders: list[OrderScore] = Field(default_factory=list)
    prob_a: float | None = None
    tier: int | None = None
    """The principle's tier under tiered aggregation (None under mean)."""


class TierJudgment(BaseModel):
    """One tier's verdict under tiered aggregation: its principles' mean probability."""

    tier: int
    prob_a: float
    principles: list[str]


class MemberVote(BaseModel):
    """One judge of a panel on one pair (`cai.judge.panel`): its label, or why it abstained."""

    member: str
    weight: float
    prob_a: float | None = None
    """The member's debiased probability that response a is better; None: it abstained."""
    per_order: dict[str, float] = Field(default_factory=dict)
    failures: list[JudgeFailure] = Field(default_factory=list)


class PairJudgment(BaseModel):
    key: str
    ok: bool
    prob_a: float | None = None
    """Debiased probability that response a is better, averaged over orders and principles."""
    per_order: dict[str, float] = Field(default_factory=dict)
    """Mean prob_a over principles within each order ("AB": a shown first, "BA": a second)."""
    per_principle: list[PrincipleJudgment] = Field(default_factory=list)
    principles: list[str] = Field(default_factory=list)
    orders_agree: bool | None = None
    n_judgments: int = 0
    failures: list[JudgeFailure] = Field(default_factory=list)
    aggregation: Aggregation = "mean"
    decided_by_tier: int | None = None
    """Under tiered aggregation, the tier whose verdict is `prob_a`."""
    per_tier: list[TierJudgment] = Field(default_factory=list)
    members: list[MemberVote] = Field(default_factory=list)
    """Under a judge panel, each member's say on this pair (empty for a single judge)."""


def effective_tiers(principles: list[Principle]) -> dict[str, int]:
    """Each principle's tier; principles without one form the tier after the last numbered."""
    numbered = [p.tier for p in principles if p.tier is not None]
    last = (max(numbered) + 1) if numbered else 1
    return {p.id: p.tier if p.tier is not None else last for p in principles}


def combine_tiers(
    scored: list[tuple[int, float]], margin: float
) -> tuple[float, int, list[TierJudgment]]:
    """(prob_a, deciding tier, per-tier verdicts) from (tier, prob_a) per principle.

    Each tier's verdict is the mean of its principles. Tiers are consulted from 1 down: the
    first whose |p - 0.5| >= margin decides; if none does, the lowest tier present decides
    (there is no tier after it to defer to).
    """
    if not scored:
        raise ValueError("combine_tiers needs at least one scored principle")
    by_tier: dict[int, list[float]] = {}
    for tier, prob in scored:
        by_tier.setdefault(tier, []).append(prob)
    verdicts = [
        TierJudgment(tier=tier, prob_a=sum(probs) / len(probs), principles=[])
        for tier, probs in sorted(by_tier.items())
    ]
    for verdict in verdicts:
        if abs(verdict.prob_a - 0.5) >= margin:
            return verdict.prob_a, verdict.tier, verdicts
    return verdicts[-1].prob_a, verdicts[-1].tier, verdicts


class ResponsesToRank(BaseModel):
    key: str
    conversation: list[Message]
    responses: list[str]


class RankingJudgment(BaseModel):
    key: str
    ok: bool
    scores: list[float] | None = None
    """Bradley-Terry log-strength per response (mean zero); higher is better."""
    pairs: list[tuple[int, int, PairJudgment]] = Field(default_factory=list)
    failures: list[JudgeFailure] = Field(default_factory=list)


class PairwiseJudge:
    """Judges pairs (and k-wise groups) of responses with one backend and one constitution."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: TemplateSet,
        config: JudgeConfig | None = None,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.config = config or JudgeConfig()
        self.requests_scored = 0
        self.rationales_generated = 0
        # Only principles with a comparison question are judged with; none is an error
        # that names the file, raised before anything is scored.
        require_use(constitution, "judge")
        self.usable = usable_principles(constitution, "judge")
        defaults = constitution.defaults
        self.aggregation: Aggregation = self.config.aggregation or defaults.aggregation
        self.tier_margin = (
            self.config.tier_margin if self.config.tier_margin is not None else defaults.tier_margin
        )
        self.tiers = effective_tiers(self.usable)

    # ---- principle choice -------------------------------------------------------------
    def principles_for(self, key: str) -> list[Principle]:
        """The principles a pair is judged with: m sampled (per tier, under tiered)."""
        m = self.config.principles_per_pair or self.constitution.defaults.principles_per_judgment
        if self.aggregation == "mean":
            return sample_principles(
                self.constitution,
                key=key,
                k=max(1, min(m, len(self.usable))),
                seed=self.config.seed,
                weighted=self.config.weighted_principles,
                use="judge",
            )
        picked: list[Principle] = []
        for tier in sorted(set(self.tiers.values())):
            pool = [p for p in self.usable if self.tiers[p.id] == tier]
            if self.config.weighted_principles:
                pool = [p for p in pool if p.weight > 0]
            if pool:
                picked += sample_principles(
                    self.constitution,
                    key=key,
                    k=max(1, min(m, len(pool))),
                    seed=self.config.seed,
                    weighted=self.config.weighted_principles,
                    pool=pool,
                    tier=tier,
                )
        return picked

    # ---- the pairwise judgment ----------------------------------------------------------
    def judge_pairs(self, items: list[PairToJudge]) -> list[PairJudgment]:
        """Judge every pair; all model calls of the batch go out together."""
        labels = list(self.config.labels)
        verdict = self.config.method == "verdict"
        template = "compare_cot" if self.config.chain_of_thought or verdict else "compare"
        orders: tuple[Order, ...] = ("AB", "BA") if self.config.both_orders else ("AB",)
        slots: list[JudgeSlot] = []
        early: dict[int, list[JudgeFailure]] = {}
        principle_ids: dict[int, list[str]] = {}

        # converted once per batch for its thousands of renders (not mutated meanwhile)
        constitution = template_data(self.constitution)
        principle_data: dict[str, TemplateData] = {}
        for index, item in enumerate(items):
            empty = [
                name
                for name, text in (("a", item.response_a), ("b", item.response_b))
                if not text.strip()
            ]
            principles = self.principles_for(item.key)
            principle_ids[index] = [p.id for p in principles]
            if empty:
                early[index] = [
                    JudgeFailure(
                        kind="empty_response",
                        raw_output=item.response_a if name == "a" else item.response_b,
                        detail=f"response {name} is empty; there is nothing to compare",
                    )
                    for name in empty
                ]
                continue
            for p in principles:
                if p.id not in principle_data:
                    principle_data[p.id] = template_data(p)
            # One render per order for all principles: the template puts the principle last.
            by_order = {
                order: self.templates.render_each(
                    template,
                    "principle",
                    [principle_data[p.id] for p in principles],
                    conversation=item.conversation,
                    responses=[item.response_a, item.response_b]
                    if order == "AB"
                    else [item.response_b, item.response_a],
                    labels=labels,
                    constitution=constitution,
                )
                for order in orders
            }
            for at, principle in enumerate(principles):
                for order in orders:
                    slots.append(JudgeSlot(index, principle.id, order, by_order[order][at]))
        if verdict or self.config.chain_of_thought:
            write_answers(self.backend, slots, self.config, verdict)
            self.rationales_generated += len(slots)
        if not verdict:
            self._score(slots)
        by_item: dict[int, list[JudgeSlot]] = {}
        for slot in slots:
            by_item.setdefault(slot.item, []).append(slot)
        return [
            self._assemble(index, item, principle_ids[index], early.get(index), by_item)
            for index, item in enumerate(items)
        ]

    def _score(self, slots: list[JudgeSlot]) -> None:
        pending = [s for s in slots if s.failure is None]
        # The rationale is model output placed back into the prompt: choice_request defuses
        # any chat control string in it, as the templates do for every other text.
        requests = [
            slot.rendered.choice_request(self.config.labels, rationale=slot.rationale)
            for slot in pending
        ]
        results = call_isolating_overflow(self.backend.score_choices, requests)
        self.requests_scored += len(requests)
        for slot, result in zip(pending, results, strict=True):
            if isinstance(result, ContextOverflowError):
                slot.failure = overflow_failure(result, slot)
            else:
                slot.score = result

    def _assemble(
        self,
        index: int,
        item: PairToJudge,
        principle_ids: list[str],
        early: list[JudgeFailure] | None,
        by_item: dict[int, list[JudgeSlot]],
    ) -> PairJudgment:
        if early:
            return PairJudgment(key=item.key, ok=False, principles=principle_ids, failures=early)
        mine = by_item.get(index, [])
        failures = [s.failure for s in mine if s.failure is not None]
        per_principle: list[PrincipleJudgment] = []
        expected_orders = 2 if self.config.both_orders else 1
        tiered = self.aggregation == "tiered"
        for pid in principle_ids:
            scored = [
                s
                for s in mine
                if s.principle == pid and (s.score is not None or self._is_verdict(s))
            ]
            orders = [self._order_score(s) for s in scored]
            complete = len(orders) == expected_orders
            prob = sum(o.prob_a for o in orders) / len(orders) if complete else None
            tier = self.tiers.get(pid) if tiered else None
            per_principle.append(
                PrincipleJudgment(principle=pid, orders=orders, prob_a=prob, tier=tier)
            )
        usable = [p for p in per_principle if p.prob_a is not None]
        ok = bool(usable) and (not failures or self.config.allow_partial)
        per_order: dict[str, float] = {}
        for order in ("AB", "BA"):
            values = [o.prob_a for p in usable for o in p.orders if o.order == order]
            if values:
                per_order[order] = sum(values) / len(values)
        agree = None
        if "AB" in per_order and "BA" in per_order:
            agree = (per_order["AB"] - 0.5) * (per_order["BA"] - 0.5) > 0
        prob_a: float | None = None
        decided_by: int | None = None
        verdicts: list[TierJudgment] = []
        if ok and tiered:
            scored = [(p.tier or 1, p.prob_a) for p in usable]
            prob_a, decided_by, verdicts = combine_tiers(scored, self.tier_margin)  # type: ignore[arg-type]
            for verdict in verdicts:
                verdict.principles = [p.principle for p in usable if p.tier == verdict.tier]
        elif ok:
            prob_a = sum(p.prob_a for p in usable) / len(usable)  # type: ignore[misc]
        return PairJudgment(
            key=item.key,
            ok=ok,
            prob_a=prob_a,
            per_order=per_order,
            per_principle=per_principle,
            principles=principle_ids,
            orders_agree=agree,
            n_judgments=sum(len(p.orders) for p in usable),
            failures=failures,
            aggregation=self.aggregation,
            decided_by_tier=decided_by,
            per_tier=verdicts,
        )

    def _is_verdict(self, slot: JudgeSlot) -> bool:
        return self.config.method == "verdict" and slot.failure is None and bool(slot.stated_label)

    def _order_score(self, slot: JudgeSlot) -> OrderScore:
        if self._is_verdict(slot):
            # A hard label, and no log-probs exist to keep: both orders average to 1, 0.5 or 0.
            probs = [1.0 if slot.stated_label == label else 0.0 for label in self.config.labels]
            return OrderScore(
                order=slot.order,
                prob_a=probs[0] if slot.order == "AB" else probs[1],
                label_probs=probs,
                label_logprobs=[],
                rationale=slot.rationale,
                stated_label=slot.stated_label,
            )
        assert slot.score is not None
        probs = slot.score.probs
        # In order AB response a holds the first label; in BA it holds the second.
        prob_a = probs[0] if slot.order == "AB" else probs[1]
        if slot.rationale is not None:
            low, high = self.config.cot_band
            prob_a = min(max(prob_a, low), high)
        return OrderScore(
            order=slot.order,
            prob_a=prob_a,
            label_probs=list(probs),
            label_logprobs=list(slot.score.logprobs),
            rationale=slot.rationale,
            stated_label=slot.stated_label,
        )


class FixedPrinciplesJudge(PairwiseJudge):
    """A judge whose principles per pair are given, not sampled (tests, lint, induction).

    `principles_by_key` maps a pair's key to the principle ids to judge it with; a key it
    does not list gets every judge principle. Aggregation (mean or tiered) is unchanged.
    """

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: TemplateSet,
        config: JudgeConfig | None = None,
        principles_by_key: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(backend, constitution, templates, config)
        self.principles_by_key = dict(principles_by_key or {})

    def principles_for(self, key: str) -> list[Principle]:
        ids = self.principles_by_key.get(key)
        if ids is None:
            return list(self.usable)
        by_id = {p.id: p for p in self.usable}
        return [by_id[pid] for pid in ids]


def ranking_pairs(item: ResponsesToRank) -> list[tuple[int, int, PairToJudge]]:
    """Every unordered pair (i < j) of an item's responses, keyed by the item and indices."""
    return [
        (
            i,
            j,
            PairToJudge(
                key=stable_id(item.key, i, j),
                conversation=item.conversation,
                response_a=item.responses[i],
                response_b=item.responses[j],
            ),
        )
        for i, j in combinations(range(len(item.responses)), 2)
    ]


def combine_ranking(
    item: ResponsesToRank, pairs: list[tuple[int, int, PairJudgment]], prior: float
) -> RankingJudgment:
    """Fit Bradley-Terry to the labeled pairs; unlabeled if any response has no labeled pair."""
    k = len(item.responses)
    failures = [f for _, _, j in pairs for f in j.failures]
    comparisons = [
        Comparison(i, j, judgment.prob_a)
        for i, j, judgment in pairs
        if judgment.ok and judgment.prob_a is not None
    ]
    covered = {c.i for c in comparisons} | {c.j for c in comparisons}
    if k < 2 or len(covered) < k:
        return RankingJudgment(key=item.key, ok=False, pairs=pairs, failures=failures)
    scores = bradley_terry(k, comparisons, prior=prior)
    return RankingJudgment(key=item.key, ok=True, scores=scores, pairs=pairs, failures=failures)
