"""The judge's own health numbers, from its judgments alone (no human labels needed).

Every labeling run reports them (the judge stage summary, `summary.json`, the dataset card),
and `cai agree` reports them over the AI dataset it audits. Definitions, per judged pair:

- labeled: the judge returned a probability `p` that response a is better; `failures_by_kind`
  counts every recorded failure (a pair can record several, one per principle and order).
- confidence: `max(p, 1 - p)`, from 0.5 (a coin flip) to 1.0 (certain); the mean is over
  labeled pairs.
- near-tie: `|p - 0.5| < near_tie` (an exact tie, p == 0.5, is one too).
- position flip: the two answer orders pick different winners. An order that gives exactly
  0.5 makes the pair an order tie, counted apart, never as a flip. The rate's denominator is
  every labeled pair with both orders known (ties included).
- length bias: among labeled pairs with a winner (p != 0.5) whose responses differ in length,
  the share where the winner is the longer response (0.5 = no preference for length).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from cai.judge.compare import PairJudgment, RankingJudgment
from cai.judge.families import SelfPreference, self_preference

LengthUnit = Literal["chars", "words"]
OrderOutcome = Literal["agree", "flip", "tie"]
NEAR_TIE = 0.05


class JudgedSample(Protocol):
    """What health reads of a judge stage's record: the responses, the policy that wrote them,
    and the pair or k-wise ranking the judge made of them."""

    @property
    def responses(self) -> list[str]: ...
    @property
    def policy_model(self) -> str: ...
    @property
    def pair(self) -> PairJudgment | None: ...
    @property
    def ranking(self) -> RankingJudgment | None: ...


def text_length(text: str, unit: LengthUnit = "chars") -> int:
    """Length of a response: characters, or whitespace-separated words."""
    return len(text) if unit == "chars" else len(text.split())


def order_outcome(
    by_order: Sequence[float] | None, orders_agree: bool | None
) -> OrderOutcome | None:
    """Whether the two answer orders agree, flip, or one of them is an exact tie (0.5).

    `by_order` holds one probability per order for the same response; without two of them
    the recorded `orders_agree` flag is used (it cannot tell a tie); None when unknown.
    """
    if by_order is not None and len(by_order) >= 2:
        if any(p == 0.5 for p in by_order):
            return "tie"
        return "agree" if len({p > 0.5 for p in by_order}) == 1 else "flip"
    if orders_agree is None:
        return None
    return "agree" if orders_agree else "flip"


@dataclass(frozen=True)
class JudgedPair:
    """One judged pair, as health needs it: both texts, the probability that `a` wins."""

    response_a: str
    response_b: str
    prob_a: float | None
    by_order: tuple[float, ...] | None = None
    orders_agree: bool | None = None
    failure_kinds: tuple[str, ...] = ()


class JudgeHealth(BaseModel):
    """How the judge behaved on its own pairs (definitions in this module's docstring)."""

    pairs_judged: int = 0
    pairs_labeled: int = 0
    failures_by_kind: dict[str, int] = Field(default_factory=dict)
    mean_confidence: float | None = None
    """Mean max(p, 1 - p) over labeled pairs: 0.5 is a coin flip, 1.0 certain."""
    near_tie_threshold: float = NEAR_TIE
    near_ties: int = 0
    exact_ties: int = 0
    near_tie_rate: float | None = None
    pairs_with_both_orders: int = 0
    position_flips: int = 0
    order_ties: int = 0
    position_flip_rate: float | None = None
    length_unit: LengthUnit = "chars"
    length_pairs: int = 0
    """Labeled pairs with a winner whose responses differ in length."""
    chosen_longer: int = 0
    length_bias_rate: float | None = None
    """Share of `length_pairs` whose winner is the longer response."""
    self_preference: SelfPreference | None = None
    """Judge and policy model families, when both are known."""

    def lines(self) -> list[str]:
        """The numbers as short report lines (the run summary and the dataset card)."""
        pct = _percent
        return [
            f"judge health: {self.pairs_labeled} of {self.pairs_judged} pairs labeled, "
            f"failures {self.failures_by_kind or 'none'}",
            f"mean confidence max(p,1-p): {_num(self.mean_confidence)}; near ties "
            f"(|p-0.5| < {self.near_tie_threshold:g}): {pct(self.near_tie_rate)} "
            f"({self.exact_ties} exact)",
            f"position flips: {pct(self.position_flip_rate)} of {self.pairs_with_both_orders} "
            f"pairs with both orders ({self.order_ties} order ties, not flips)",
            f"length bias: the longer response ({self.length_unit}) won "
            f"{pct(self.length_bias_rate)} of {self.length_pairs} pairs (0.5 = no bias)",
            *self._self_preference_lines(),
        ]

    def _self_preference_lines(self) -> list[str]:
        sp = self.self_preference
        if sp is None or not sp.same_family:
            return []
        return [
            f"self-preference risk: judge and policy share the family "
            f"{', '.join(sp.shared_families)}. {sp.note}"
        ]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def judged_health(
    judged: Iterable[JudgedSample], judge_model: str | None = None, near_tie: float = NEAR_TIE
) -> JudgeHealth:
    """Health of a judging job's records, with the self-preference check against the policy
    models that wrote the samples."""
    policies: set[str] = set()

    def pairs() -> Iterator[JudgedPair]:
        for item in judged:
            policies.add(item.policy_model)
            yield from pairs_of_judged([item])

    health = judge_health(pairs(), near_tie=near_tie)
    health.self_preference = self_preference([judge_model], policies)
    return health


def judge_health(
    pairs: Iterable[JudgedPair], near_tie: float = NEAR_TIE, length_unit: LengthUnit = "chars"
) -> JudgeHealth:
    """Health numbers over judged pairs, in one streaming pass."""
    h = JudgeHealth(near_tie_threshold=near_tie, length_unit=length_unit)
    failures: Counter[str] = Counter()
    confidence = 0.0
    for pair in pairs:
        h.pairs_judged += 1
        failures.update(pair.failure_kinds)
        p = pair.prob_a
        if p is None:
            continue
        h.pairs_labeled += 1
        confidence += max(p, 1.0 - p)
        h.near_ties += abs(p - 0.5) < near_tie
        h.exact_ties += p == 0.5
        outcome = order_outcome(pair.by_order, pair.orders_agree)
        if outcome is not None:
            h.pairs_with_both_orders += 1
            h.position_flips += outcome == "flip"
            h.order_ties += outcome == "tie"
        len_a = text_length(pair.response_a, length_unit)
        len_b = text_length(pair.response_b, length_unit)
        if p != 0.5 and len_a != len_b:
            h.length_pairs += 1
            h.chosen_longer += (p > 0.5) == (len_a > len_b)
    h.failures_by_kind = dict(sorted(failures.items()))
    h.mean_confidence = _ratio(confidence, h.pairs_labeled)
    h.near_tie_rate = _ratio(h.near_ties, h.pairs_labeled)
    h.position_flip_rate = _ratio(h.position_flips, h.pairs_with_both_orders)
    h.length_bias_rate = _ratio(h.chosen_longer, h.length_pairs)
    return h


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def _from_judgment(a: str, b: str, judgment: PairJudgment) -> JudgedPair:
    orders = judgment.per_order
    by_order = (orders["AB"], orders["BA"]) if "AB" in orders and "BA" in orders else None
    return JudgedPair(
        response_a=a,
        response_b=b,
        prob_a=judgment.prob_a if judgment.ok else None,
        by_order=by_order,
        orders_agree=judgment.orders_agree,
        failure_kinds=tuple(f.kind for f in judgment.failures),
    )


def pairs_of_judged(judged: Iterable[JudgedSample]) -> Iterator[JudgedPair]:
    """Every pair the judge saw in judged samples (each pair of a k-wise ranking included)."""
    for item in judged:
        if item.pair is not None:
            a, b = item.responses
            yield _from_judgment(a, b, item.pair)
        if item.ranking is not None:
            for i, j, judgment in item.ranking.pairs:
                yield _from_judgment(item.responses[i], item.responses[j], judgment)
