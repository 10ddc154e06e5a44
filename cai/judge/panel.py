"""A panel of judges: every pair judged by several judge models, their verdicts combined.

Each member is a `PairwiseJudge` over its own backend, debiased over both answer orders as a
single judge is. The panel's probability that response a is better is the weighted mean of
the members' log-odds (`combine: mean_logodds`, probabilities clipped to [1e-6, 1 - 1e-6])
or of their probabilities (`mean_prob`), over the members that gave a label. A member that
yields no label on a pair abstains: its failures stay in the pair's judgment under its name,
and the rest label the pair when at least `min_members` (default: a majority) remain;
otherwise the pair is a recorded failure, never a label. The combination is a symmetric,
exactly rounded sum, so the order of the members never changes a label or breaks a tie: two
equal-weight members with opposite verdicts give 0.5, a tie.

A member whose backend raises (an outage, not a verdict) stops the chunk as a single judge
would, so a rerun resumes instead of recording an outage as abstentions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.backends.base import Backend
from cai.errors import CaiError
from cai.judge.compare import (
    MemberVote,
    PairJudgment,
    PairToJudge,
    PairwiseJudge,
    PrincipleJudgment,
)

CLIP = 1e-6
TIE_ROUNDING = 1e-12
"""Combined log-odds (or p - 0.5) closer to zero than this are float rounding of a tie."""
Combine = Literal["mean_logodds", "mean_prob"]


class PanelConfig(BaseModel):
    """How the members' verdicts become one label (all of it is in the resume fingerprint)."""

    model_config = ConfigDict(extra="forbid")

    weights: list[float] | None = Field(
        None, description="one positive weight per judge_backends entry; default: all equal"
    )
    combine: Combine = Field(
        "mean_logodds",
        description="mean_logodds: weighted mean of log(p / (1 - p)); mean_prob: of p",
    )
    min_members: int | None = Field(
        None,
        ge=1,
        description="members that must give a label for the pair to be labeled; "
        "default: a majority (more than half of the panel)",
    )

    def member_weights(self, size: int) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0] * size

    def quorum(self, size: int) -> int:
        return self.min_members if self.min_members is not None else size // 2 + 1

    def problems(self, size: int) -> list[str]:
        """What is wrong with this panel for `size` members (empty when nothing is)."""
        out = []
        if size < 1:
            out.append("a panel needs at least one judge in judge_backends")
        if self.weights is not None and len(self.weights) != size:
            out.append(f"panel.weights has {len(self.weights)} entries for {size} judges")
        if self.weights is not None and any(
            not w > 0 or not math.isfinite(w) for w in self.weights
        ):
            out.append(f"panel.weights {self.weights} must all be positive numbers")
        if self.quorum(size) > size:
            out.append(f"panel.min_members is {self.quorum(size)} but there are {size} judges")
        return out


def member_names(models: Sequence[str]) -> list[str]:
    """Short, unique member names from the models' names or paths (`#2` on repeats)."""
    base = [m.rstrip("/").rsplit("/", 1)[-1] or m for m in models]
    out = []
    for i, name in enumerate(base):
        repeats = base[:i].count(name)
        out.append(f"{name}#{repeats + 1}" if repeats or base.count(name) > 1 else name)
    return out


def panel_settings(names: Sequence[str], config: PanelConfig) -> dict[str, Any]:
    """The panel's part of the judging fingerprint (member identities go in `judge_model`)."""
    size = len(names)
    return {
        "members": list(names),
        "weights": config.member_weights(size),
        "combine": config.combine,
        "min_members": config.quorum(size),
    }


def _logit(p: float) -> float:
    p = min(max(p, CLIP), 1.0 - CLIP)
    return math.log(p) - math.log1p(-p)


def combine_probs(probs: Sequence[float], weights: Sequence[float], how: Combine) -> float:
    """The weighted mean of log-odds (or of probabilities); independent of the members' order.

    Sums are exactly rounded (`math.fsum`), so reordering members changes nothing; verdicts
    that cancel up to float rounding (within `TIE_ROUNDING`) are an exact tie, 0.5.
    """
    total = math.fsum(weights)
    if how == "mean_prob":
        p = math.fsum(w * p for w, p in zip(weights, probs, strict=True)) / total
        return 0.5 if abs(p - 0.5) < TIE_ROUNDING else p
    z = math.fsum(w * _logit(p) for w, p in zip(weights, probs, strict=True)) / total
    return 0.5 if abs(z) < TIE_ROUNDING else 1.0 / (1.0 + math.exp(-z))


@dataclass
class PanelMember:
    name: str
    judge: PairwiseJudge
    weight: float = 1.0


class PanelJudge:
    """Judges every pair with each member and combines their debiased probabilities."""

    def __init__(self, members: list[PanelMember], config: PanelConfig | None = None) -> None:
        self.panel = config or PanelConfig()
        problems = self.panel.problems(len(members))
        if problems:
            raise CaiError(
                "; ".join(problems),
                key="panel",
                fix="Give one positive weight per judge and a min_members no larger than the "
                "number of judges.",
            )
        self.members = members
        first = members[0].judge
        self.config = first.config
        self.constitution = first.constitution
        self.templates = first.templates
        self.quorum = self.panel.quorum(len(members))

    @classmethod
    def from_judges(
        cls, named: list[tuple[str, PairwiseJudge]], config: PanelConfig | None = None
    ) -> PanelJudge:
        config = config or PanelConfig()
        weights = config.member_weights(len(named))
        return cls([PanelMember(n, j, w) for (n, j), w in zip(named, weights, strict=True)], config)

    @property
    def judges(self) -> list[PairwiseJudge]:
        return [m.judge for m in self.members]

    @property
    def backends(self) -> list[Backend]:
        return [m.judge.backend for m in self.members]

    @property
    def model_id(self) -> str:
        """Every member's model identity, in panel order."""
        return "panel[" + ", ".join(m.judge.backend.model_id for m in self.members) + "]"

    @property
    def requests_scored(self) -> int:
        return sum(m.judge.requests_scored for m in self.members)

    @property
    def rationales_generated(self) -> int:
        return sum(m.judge.rationales_generated for m in self.members)

    def settings(self) -> dict[str, Any]:
        return panel_settings([m.name for m in self.members], self.panel)

    def judge_pairs(self, pairs: list[PairToJudge]) -> list[PairJudgment]:
        """Each member judges the whole batch (one engine batch each), then pairs combine."""
        verdicts = [m.judge.judge_pairs(pairs) for m in self.members]
        return [self._combine(pair, [v[i] for v in verdicts]) for i, pair in enumerate(pairs)]

    def _combine(self, pair: PairToJudge, judged: list[PairJudgment]) -> PairJudgment:
        votes = [_vote(m, j) for m, j in zip(self.members, judged, strict=True)]
        voting = [(m, j) for m, j in zip(self.members, judged, strict=True) if _labels(j)]
        failures = [
            f.model_copy(update={"detail": f"[{m.name}] {f.detail}".strip()})
            for m, j in zip(self.members, judged, strict=True)
            for f in j.failures
        ]
        principles = judged[0].principles
        if len(voting) < self.quorum:
            return PairJudgment(
                key=pair.key, ok=False, principles=principles, failures=failures, members=votes
            )
        weights = [m.weight for m, _ in voting]
        prob = combine_probs([j.prob_a for _, j in voting], weights, self.panel.combine)  # type: ignore[misc]
        per_order = {}
        for order in ("AB", "BA"):
            have = [(m.weight, j.per_order[order]) for m, j in voting if order in j.per_order]
            if have:
                per_order[order] = combine_probs(
                    [p for _, p in have], [w for w, _ in have], self.panel.combine
                )
        agree = None
        if "AB" in per_order and "BA" in per_order:
            agree = (per_order["AB"] - 0.5) * (per_order["BA"] - 0.5) > 0
        return PairJudgment(
            key=pair.key,
            ok=True,
            prob_a=prob,
            per_order=per_order,
            per_principle=self._per_principle(principles, voting),
            principles=principles,
            orders_agree=agree,
            n_judgments=sum(j.n_judgments for _, j in voting),
            failures=failures,
            aggregation=judged[0].aggregation,
            members=votes,
        )

    def _per_principle(
        self, principles: list[str], voting: list[tuple[PanelMember, PairJudgment]]
    ) -> list[PrincipleJudgment]:
        """Each principle's probability, combined over the members that scored it."""
        out = []
        for pid in principles:
            have = [
                (m.weight, pj.prob_a)
                for m, j in voting
                for pj in j.per_principle
                if pj.principle == pid and pj.prob_a is not None
            ]
            prob = (
                combine_probs([p for _, p in have], [w for w, _ in have], self.panel.combine)
                if have
                else None
            )
            out.append(PrincipleJudgment(principle=pid, prob_a=prob))
        return out


def _labels(judgment: PairJudgment) -> bool:
    return judgment.ok and judgment.prob_a is not None


def _vote(member: PanelMember, judgment: PairJudgment) -> MemberVote:
    return MemberVote(
        member=member.name,
        weight=member.weight,
        prob_a=judgment.prob_a if _labels(judgment) else None,
        per_order=dict(judgment.per_order),
        failures=list(judgment.failures),
    )


# ---- agreement --------------------------------------------------------------------------------
class MemberAgreement(BaseModel):
    """How often one member's winner is the panel's (pairs where both are decisive)."""

    member: str
    pairs: int
    agreement: float | None
    abstained: int


def member_agreement(judgments: Sequence[PairJudgment]) -> list[MemberAgreement]:
    """Per member: the share of labeled pairs where its winner equals the panel's winner.

    Ties (exactly 0.5, the member's or the panel's) are left out, as they name no winner.
    """
    tallies: dict[str, list[int]] = {}
    for judgment in judgments:
        for vote in judgment.members:
            entry = tallies.setdefault(vote.member, [0, 0, 0])  # agreed, decided, abstained
            if vote.prob_a is None:
                entry[2] += 1
                continue
            if not judgment.ok or judgment.prob_a is None:
                continue
            if vote.prob_a == 0.5 or judgment.prob_a == 0.5:
                continue
            entry[1] += 1
            entry[0] += int((vote.prob_a > 0.5) == (judgment.prob_a > 0.5))
    return [
        MemberAgreement(
            member=name,
            pairs=decided,
            agreement=(agreed / decided) if decided else None,
            abstained=abstained,
        )
        for name, (agreed, decided, abstained) in tallies.items()
    ]


def member_columns(judgment: PairJudgment | None, chosen_is_a: bool) -> dict[str, Any]:
    """A preference row's panel columns: the members and each one's P(chosen wins)."""
    if judgment is None or not judgment.members:
        return {}
    probs = [
        None if v.prob_a is None else (v.prob_a if chosen_is_a else 1.0 - v.prob_a)
        for v in judgment.members
    ]
    return {
        "judge_members": [v.member for v in judgment.members],
        "prob_chosen_by_member": probs,
    }


def member_votes(row: dict[str, Any]) -> list[tuple[str, float]]:
    """(member, P(chosen wins)) of each panel member that voted on a preference row.

    For `cai agree`: a member's label is `chosen` when its probability is above 0.5, so its
    agreement with people is computed like the pair's own. Rows without a panel give [].
    """
    members = row.get("judge_members") or []
    probs = row.get("prob_chosen_by_member") or []
    if len(members) != len(probs):
        return []
    return [(m, float(p)) for m, p in zip(members, probs, strict=True) if p is not None]


class MemberAccuracy(BaseModel):
    """One panel member against people: share of decisive pairs where it picked their winner."""

    member: str
    n: int
    accuracy: float | None


def member_accuracy(joined: Iterable[tuple[dict[str, Any], float]]) -> list[MemberAccuracy]:
    """Per-member agreement with people, for `cai agree`.

    `joined` holds (AI preference row, human probability that the row's `chosen` wins, ties
    0.5, raters averaged): the pairs both sources labeled. A pair counts for a member when
    neither the member nor the people are at exactly 0.5.
    """
    tallies: dict[str, list[int]] = {}
    for row, human_chosen in joined:
        for member, prob in member_votes(row):
            entry = tallies.setdefault(member, [0, 0])
            if prob == 0.5 or human_chosen == 0.5:
                continue
            entry[1] += 1
            entry[0] += int((prob > 0.5) == (human_chosen > 0.5))
    return [
        MemberAccuracy(member=m, n=n, accuracy=(right / n) if n else None)
        for m, (right, n) in tallies.items()
    ]
