"""How a constitution's principles behaved on real judgments, for `cai constitution lint`.

Every judged pair stores each sampled principle's debiased probability and both answer
orders (`PairJudgment.per_principle`). Pairs two principles were both asked about give a
principle x principle agreement matrix: principles that (nearly) always vote alike are
redundant, principles whose probabilities are negatively correlated pull against each
other. Re-aggregating each pair without one principle shows whether it ever moves a label;
the orders show which principles a judge reads by position rather than content; human
labels of the same pairs show which principles agree with people.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from cai.constitution_tools.lint import Finding, LintConfig, Severity
from cai.human.pairs import prob_first, row_key
from cai.judge.compare import combine_tiers
from cai.records import pair_key

EPS = 1e-9


class PairVotes(BaseModel):
    """One judged pair as lint needs it: per-principle probabilities that response a wins."""

    key: str
    a_is_first: bool
    """Whether response a sorts first (the orientation human labels are matched in)."""
    aggregation: str = "mean"
    principles: dict[str, float] = Field(default_factory=dict)
    tiers: dict[str, int] = Field(default_factory=dict)
    orders: dict[str, list[float]] = Field(default_factory=dict)


def collect_votes(judged: Iterable[Any]) -> list[PairVotes]:
    """PairVotes of every judged pair (two-response prompts and the pairs of rankings)."""
    out = []
    for sample in judged:
        if sample.kind == "pair" and sample.pair is not None:
            a, b = sample.responses
            found = [(a, b, sample.pair)]
        elif sample.kind == "ranking" and sample.ranking is not None:
            found = [
                (sample.responses[i], sample.responses[j], judgment)
                for i, j, judgment in sample.ranking.pairs
            ]
        else:
            continue
        for a, b, judgment in found:
            scored = [p for p in judgment.per_principle if p.prob_a is not None]
            if not scored:
                continue
            out.append(
                PairVotes(
                    key=pair_key(sample.prompt, a, b),
                    a_is_first=a <= b,
                    aggregation=judgment.aggregation,
                    principles={p.principle: p.prob_a for p in scored},
                    tiers={p.principle: p.tier for p in scored if p.tier is not None},
                    orders={
                        p.principle: [o.prob_a for o in p.orders]
                        for p in scored
                        if len(p.orders) == 2
                    },
                )
            )
    return out


def _sign(p: float | None) -> int:
    if p is None or abs(p - 0.5) <= EPS:
        return 0
    return 1 if p > 0.5 else -1


def aggregate(votes: PairVotes, margin: float, without: str | None = None) -> float | None:
    """The pair's probability re-aggregated from its principles (leaving one out)."""
    kept = {pid: p for pid, p in votes.principles.items() if pid != without}
    if not kept:
        return None
    if votes.aggregation == "tiered":
        scored = [(votes.tiers.get(pid, 1), p) for pid, p in kept.items()]
        return combine_tiers(scored, margin)[0]
    return sum(kept.values()) / len(kept)


class PrincipleStats(BaseModel):
    principle: str
    pairs: int = 0
    decisive: int = 0
    mean_confidence: float | None = None
    """Mean |p - 0.5| over the pairs it judged."""
    moves: int = 0
    """Pairs whose label changes when this principle is left out."""
    tier: int | None = None
    tier_decided: int = 0
    """Under tiered aggregation: pairs that this principle's tier decided."""
    order_pairs: int = 0
    order_disagreement: float | None = None
    """Share of pairs where its two answer orders prefer different responses."""
    human_pairs: int = 0
    human_agreement: float | None = None


class Matrix(BaseModel):
    """Principle x principle statistics over the pairs both judged (None: too few pairs)."""

    ids: list[str]
    agreement: list[list[float | None]]
    correlation: list[list[float | None]]
    shared: list[list[int]]


class Empirical(BaseModel):
    pairs: int
    stats: list[PrincipleStats]
    matrix: Matrix
    findings: list[Finding]
    human_pairs: int = 0
    judge_human_agreement: float | None = None
    notes: list[str] = Field(default_factory=list)


def _correlation(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= EPS or syy <= EPS:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


def agreement_matrix(votes: list[PairVotes], ids: list[str], min_shared: int = 1) -> Matrix:
    """Agreement (share of shared decisive pairs voted alike) and correlation per pair of ids."""
    n = len(ids)
    agreement: list[list[float | None]] = [[None] * n for _ in range(n)]
    correlation: list[list[float | None]] = [[None] * n for _ in range(n)]
    shared = [[0] * n for _ in range(n)]
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            if j < i:
                agreement[i][j] = agreement[j][i]
                correlation[i][j] = correlation[j][i]
                shared[i][j] = shared[j][i]
                continue
            both = [
                (v.principles[a], v.principles[b])
                for v in votes
                if a in v.principles and b in v.principles
            ]
            shared[i][j] = len(both)
            decisive = [(_sign(x), _sign(y)) for x, y in both if _sign(x) and _sign(y)]
            if len(both) >= min_shared and decisive:
                agreement[i][j] = sum(x == y for x, y in decisive) / len(decisive)
            if len(both) >= min_shared:
                correlation[i][j] = _correlation([x for x, _ in both], [y for _, y in both])
    return Matrix(ids=ids, agreement=agreement, correlation=correlation, shared=shared)


def human_labels(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Pair key -> mean probability (over raters) that the alphabetically first response wins."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        sums.setdefault(row_key(row), []).append(prob_first(row))
    return {key: sum(values) / len(values) for key, values in sums.items()}


@dataclass
class _PairVerdict:
    """One pair's label as a sign (1: response a, -1: b, 0: a tie), from every principle."""

    full: int
    deciding_tier: int | None
    """Under tiered aggregation, the tier that decided the pair."""
    human: int | None
    """The people's sign for the pair (None: not labelled)."""


def _verdict(votes: PairVotes, tier_margin: float, human: dict[str, float] | None) -> _PairVerdict:
    deciding_tier = None
    if votes.aggregation == "tiered":
        scored = [(votes.tiers.get(pid, 1), p) for pid, p in votes.principles.items()]
        deciding_tier = combine_tiers(scored, tier_margin)[1]
    sign = None
    if human is not None and votes.key in human:
        first = human[votes.key]
        sign = _sign(first if votes.a_is_first else 1.0 - first)
    return _PairVerdict(_sign(aggregate(votes, tier_margin)), deciding_tier, sign)


class _Tally:
    """What `analyse` gathers about one principle while it walks the pairs."""

    def __init__(self, principle: str) -> None:
        self.stats = PrincipleStats(principle=principle)
        self.confidence: list[float] = []
        self.order_flips: list[bool] = []
        self.human_votes: list[bool] = []

    def count(self, votes: PairVotes, pair: _PairVerdict, tier_margin: float) -> None:
        """Count one pair this principle judged."""
        s, p = self.stats, votes.principles[self.stats.principle]
        s.pairs += 1
        if pair.deciding_tier is not None:
            s.tier = votes.tiers.get(s.principle, 1)
            s.tier_decided += int(s.tier == pair.deciding_tier)
        s.decisive += int(bool(_sign(p)))
        self.confidence.append(abs(p - 0.5))
        s.moves += int(_sign(aggregate(votes, tier_margin, without=s.principle)) != pair.full)
        orders = votes.orders.get(s.principle)
        if orders:
            self.order_flips.append((orders[0] - 0.5) * (orders[1] - 0.5) < 0)
        if pair.human and _sign(p):
            self.human_votes.append(_sign(p) == pair.human)

    def finish(self) -> PrincipleStats:
        """The statistics, with the means over what was counted."""
        s = self.stats
        if self.confidence:
            s.mean_confidence = sum(self.confidence) / len(self.confidence)
        if self.order_flips:
            s.order_pairs = len(self.order_flips)
            s.order_disagreement = sum(self.order_flips) / len(self.order_flips)
        if self.human_votes:
            s.human_pairs = len(self.human_votes)
            s.human_agreement = sum(self.human_votes) / len(self.human_votes)
        return s


def analyse(
    votes: list[PairVotes],
    ids: list[str],
    config: LintConfig | None = None,
    tier_margin: float = 0.1,
    human: dict[str, float] | None = None,
) -> Empirical:
    """Per-principle statistics, the agreement matrix and the empirical findings."""
    config = config or LintConfig()
    seen = sorted({pid for v in votes for pid in v.principles})
    known = [pid for pid in ids if pid in seen] + [pid for pid in seen if pid not in ids]
    unknown = [pid for pid in seen if pid not in ids]
    notes = []
    if unknown:
        notes.append(
            f"the judgments use principles this constitution lacks: {', '.join(unknown)} "
            "(made with another version of it?)"
        )
    tallies = {pid: _Tally(pid) for pid in known}
    judge_votes: list[bool] = []
    human_pairs = 0
    for v in votes:
        pair = _verdict(v, tier_margin, human)
        if pair.human is not None:
            human_pairs += 1
            if pair.human and pair.full:
                judge_votes.append(pair.full == pair.human)
        for pid in v.principles:
            tallies[pid].count(v, pair, tier_margin)
    ordered = [tallies[pid].finish() for pid in known]
    matrix = agreement_matrix(votes, known, config.min_shared)
    judge_agreement = sum(judge_votes) / len(judge_votes) if judge_votes else None
    confidence = {pid: tally.confidence for pid, tally in tallies.items()}
    findings = _findings(ordered, matrix, config, confidence, judge_agreement)
    findings += _coverage_findings(ids, seen, votes, human is not None and not human_pairs)
    return Empirical(
        pairs=len(votes),
        stats=ordered,
        matrix=matrix,
        findings=findings,
        human_pairs=human_pairs,
        judge_human_agreement=judge_agreement,
        notes=notes,
    )


def _coverage_findings(
    ids: list[str], seen: list[str], votes: list[PairVotes], no_human_overlap: bool
) -> list[Finding]:
    """What the judgments cannot say: no pair people labelled, principles never judged."""
    out = []
    if no_human_overlap:
        out.append(
            Finding(
                severity="warning",
                code="no-human-overlap",
                message="no judged pair is in the human labels, so agreement with people "
                "cannot be measured",
                fix="label (some of) the same pairs: `cai route export` picks the ones to label",
            )
        )
    missing = [pid for pid in ids if pid not in seen]
    if missing and votes:
        out.append(
            Finding(
                severity="info",
                code="not-judged",
                principles=missing,
                message=f"never judged in these judgments: {', '.join(missing)}",
                fix="judge more pairs, or check that these principles have a comparison_question",
            )
        )
    return out


def _findings(
    stats: list[PrincipleStats],
    matrix: Matrix,
    config: LintConfig,
    confidence: dict[str, list[float]],
    judge_agreement: float | None,
) -> list[Finding]:
    out = _pair_findings(stats, matrix, config)
    for s in stats:
        out += _never_moves(s, config, confidence[s.principle])
        out += _order_disagreement(s, config)
        out += _human_disagreement(s, config, judge_agreement)
    return out


def _pair_findings(stats: list[PrincipleStats], matrix: Matrix, config: LintConfig) -> list:
    """Two principles that vote alike (redundant) or pull against each other (conflicting)."""
    by_id = {s.principle: s for s in stats}
    out: list[Finding] = []
    ids = matrix.ids
    for i, a in enumerate(ids):
        for j in range(i + 1, len(ids)):
            b = ids[j]
            n = matrix.shared[i][j]
            if n < config.min_shared:
                continue
            agree, corr = matrix.agreement[i][j], matrix.correlation[i][j]
            if agree is not None and agree >= config.redundant_agreement:
                drop = _weaker(by_id[a], by_id[b])
                out.append(
                    Finding(
                        severity="warning",
                        code="redundant",
                        principles=[a, b],
                        message=f"`{a}` and `{b}` vote alike on {agree:.0%} of {n} shared pairs",
                        fix=f"drop one (suggested: `{drop}`, {_why(by_id[drop])}), or make "
                        "them ask about different things",
                    )
                )
            elif corr is not None and corr <= config.conflict_correlation:
                out.append(
                    Finding(
                        severity="warning",
                        code="conflicting",
                        principles=[a, b],
                        message=f"`{a}` and `{b}` pull in opposite directions (correlation "
                        f"{corr:.2f} over {n} shared pairs"
                        + (f", vote alike on {agree:.0%}" if agree is not None else "")
                        + ")",
                        fix="decide which should win (tiers, `aggregation: tiered`) or reword "
                        "one so they stop contradicting each other",
                    )
                )
    return out


def _about(s: PrincipleStats, severity: Severity = "warning", **finding: str) -> Finding:
    """A finding about one principle."""
    return Finding(severity=severity, principles=[s.principle], **finding)


def _never_moves(s: PrincipleStats, config: LintConfig, confidence: list[float]) -> list:
    """A principle that never changes a label: always near 0.5, or always outvoted."""
    flat = confidence and max(confidence) < config.flat_margin
    if s.pairs < config.min_shared or not (s.moves == 0 or flat):
        return []
    why = (
        f"its probability never leaves 0.5 +- {config.flat_margin}"
        if flat
        else "leaving it out never changes a label"
    )
    if s.tier is not None and not s.tier_decided:
        why += (
            f"; its tier ({s.tier}) decided none of them (a higher tier was sure, "
            "or this tier was not and a lower one decided)"
        )
    return [
        _about(
            s,
            code="never-moves",
            message=f"`{s.principle}` never moves a label over {s.pairs} pairs: {why}",
            fix="reword it to be more concrete, or drop it",
        )
    ]


def _order_disagreement(s: PrincipleStats, config: LintConfig) -> list[Finding]:
    """A principle the judge reads by answer position more than by content."""
    if (
        s.order_disagreement is None
        or s.order_pairs < config.min_shared
        or s.order_disagreement < config.order_disagreement
    ):
        return []
    return [
        _about(
            s,
            code="order-disagreement",
            message=f"`{s.principle}`: its two answer orders disagree on "
            f"{s.order_disagreement:.0%} of {s.order_pairs} pairs (the judge reads it by "
            "position more than by content)",
            fix="reword it to name what to look for in a response",
        )
    ]


def _human_disagreement(
    s: PrincipleStats, config: LintConfig, judge_agreement: float | None
) -> list[Finding]:
    """A principle that points away from the raters, or agrees with them less than the judge."""
    if s.human_agreement is None or s.human_pairs < config.min_shared:
        return []
    if s.human_agreement < 0.5:
        return [
            _about(
                s,
                code="disagrees-with-people",
                message=f"`{s.principle}` agrees with people on only "
                f"{s.human_agreement:.0%} of {s.human_pairs} pairs",
                fix="drop it, or reword it: it points the other way from your raters",
            )
        ]
    if judge_agreement is not None and s.human_agreement < judge_agreement - 0.1:
        return [
            _about(
                s,
                "info",
                code="below-judge",
                message=f"`{s.principle}` agrees with people on {s.human_agreement:.0%} "
                f"of {s.human_pairs} pairs, below the judge overall ({judge_agreement:.0%})",
                fix="consider rewording it",
            )
        ]
    return []


def _weaker(a: PrincipleStats, b: PrincipleStats) -> str:
    """Of two redundant principles, the one to drop: less agreement with people, else fewer
    label moves, else the later id."""
    ha, hb = a.human_agreement, b.human_agreement
    if ha is not None and hb is not None and ha != hb:
        return a.principle if ha < hb else b.principle
    if a.moves != b.moves:
        return a.principle if a.moves < b.moves else b.principle
    return max(a.principle, b.principle)


def _why(s: PrincipleStats) -> str:
    if s.human_agreement is not None:
        return f"{s.human_agreement:.0%} agreement with people"
    return f"moves {s.moves} label(s)"
