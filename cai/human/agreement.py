"""How far the AI judge can be trusted: its labels measured against human labels on the
same pairs (joined in `cai.human.joined`), with bootstrap intervals, plus the judge's own
health, length bias and a self-preference check.

For kappa, each pair's responses are ordered alphabetically ("first" / "second"), which is
independent of both sources. For calibration the AI's own choice is the reference:
confidence = the AI's prob_chosen, outcome = the human probability that the AI's chosen
response is better (a tie counts as 0.5, several raters are averaged).

Optional AI columns used when present: `prob_chosen_by_order` (one probability per answer order
that the chosen response wins) and `prob_chosen_by_principle` (one per entry of `principles`).
Without them, position disagreement falls back to `orders_agree` and per-principle agreement
to the pair's overall label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from cai.human.bootstrap import BootstrapSettings, Interval, bootstrap_interval
from cai.human.joined import Joined, JoinedPair, NoSharedPairsError, join_labels
from cai.human.length_bias import LengthBias, length_bias
from cai.human.metrics import (
    CalibrationBin,
    Label,
    LabelTable,
    accuracy_of,
    calibration_bins,
    cohen_kappa,
    decisive_count,
    fleiss_kappa,
    kappa_of,
    label_of,
)
from cai.human.pairs import prob_first, response_text
from cai.judge.families import SelfPreference, self_preference
from cai.judge.health import JudgedPair, JudgeHealth, LengthUnit, judge_health, order_outcome
from cai.judge.panel import MemberAccuracy, member_accuracy

__all__ = [
    "AgreementReport",
    "CalibrationBin",
    "NoSharedPairsError",
    "calibration_bins",
    "cohen_kappa",
    "compute_agreement",
    "fleiss_kappa",
    "label_of",
]

TIE_POLICY = (
    "A probability of exactly 0.5 is a tie (several human raters are averaged first). "
    "Accuracy counts decisive pairs only: a tie on either side leaves the pair out. "
    "Cohen's kappa keeps every pair and counts a tie as a third label, so a tie against a "
    "winner is a disagreement. An answer order giving exactly 0.5 makes an order tie, never a "
    "flip; order ties stay in the flip rate's denominator."
)


class PrincipleAgreement(BaseModel):
    principle: str
    n: int
    """Pairs that used this principle and have a decisive human label."""
    accuracy: float | None
    basis: str
    """"principle probability" (from prob_chosen_by_principle) or "pair label"."""
    accuracy_ci: Interval | None = None
    cohen_kappa: float | None = None
    cohen_kappa_ci: Interval | None = None


class InterRater(BaseModel):
    n_pairs: int
    n_ratings: int
    observed_agreement: float | None
    fleiss_kappa: float | None


class AgreementReport(BaseModel):
    n_ai_rows: int
    n_human_rows: int
    n_pairs: int
    """Pairs carrying both an AI and a human label."""
    n_decisive: int
    """Joined pairs where neither the human (mean) label nor the AI is a tie."""
    n_human_ties: int
    n_ai_ties: int
    accuracy: float | None
    cohen_kappa: float | None
    ece: float | None
    calibration: list[CalibrationBin]
    position_disagreement_rate: float | None
    """Share of all AI rows whose answer orders pick different winners (rows that record it;
    order ties count in the denominator, not as flips)."""
    n_position_known: int
    accuracy_orders_agree: float | None
    accuracy_orders_disagree: float | None
    per_principle: list[PrincipleAgreement]
    inter_rater: InterRater
    notes: list[str] = Field(default_factory=list)
    accuracy_ci: Interval | None = None
    cohen_kappa_ci: Interval | None = None
    n_position_ties: int = 0
    position_disagreement_ci: Interval | None = None
    length_bias: LengthBias | None = None
    judge_health: JudgeHealth | None = None
    """The judge's own numbers over every AI row (cai.judge.health)."""
    self_preference: SelfPreference | None = None
    panel_members: list[MemberAccuracy] = Field(default_factory=list)
    """A judge panel's members against people, one row each ([] without a panel)."""
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    tie_policy: str = TIE_POLICY


def _label_table(pairs: Sequence[JoinedPair]) -> Counter[tuple[Label, Label]]:
    return Counter((p.ai_label, p.human_label) for p in pairs)


def _with_intervals(table: LabelTable, settings: BootstrapSettings) -> dict[str, Any]:
    """Accuracy and kappa of a label table with their bootstrap intervals."""
    return {
        "accuracy": accuracy_of(table),
        "accuracy_ci": bootstrap_interval(table, accuracy_of, settings),
        "cohen_kappa": kappa_of(table),
        "cohen_kappa_ci": bootstrap_interval(table, kappa_of, settings),
    }


def _calibration(
    pairs: Sequence[JoinedPair], n_bins: int
) -> tuple[float | None, list[CalibrationBin]]:
    confidence, outcome = [], []
    for pair in pairs:
        p = float(pair.ai["prob_chosen"])
        confidence.append(max(p, 1.0 - p))
        outcome.append(pair.human_on_chosen if p >= 0.5 else 1.0 - pair.human_on_chosen)
    return calibration_bins(confidence, outcome, n_bins=n_bins)


def pair_of_row(row: dict[str, Any]) -> JudgedPair:
    """A preference row (chosen / rejected, `prob_chosen`) as a judged pair with a = chosen."""
    by_order = row.get("prob_chosen_by_order")
    return JudgedPair(
        response_a=response_text(row["chosen"]),
        response_b=response_text(row["rejected"]),
        prob_a=float(row["prob_chosen"]),
        by_order=tuple(by_order) if by_order and len(by_order) >= 2 else None,
        orders_agree=row.get("orders_agree"),
    )


def row_order_outcome(row: dict[str, Any]) -> str | None:
    """ "agree", "flip" or "tie" for an AI row's two answer orders; None when not recorded."""
    return order_outcome(row.get("prob_chosen_by_order"), row.get("orders_agree"))


def _flip_rate(table: dict[str, int]) -> float | None:
    n = sum(table.values())
    return table.get("flip", 0) / n if n else None


def _position(joined: Joined, settings: BootstrapSettings) -> dict[str, Any]:
    """Flip rate over all AI rows that record both orders, and accuracy split by it."""
    outcomes = Counter(o for o in map(row_order_outcome, joined.ai_rows) if o is not None)
    split: dict[str, list[JoinedPair]] = defaultdict(list)
    for pair in joined.pairs:
        split[row_order_outcome(pair.ai) or "unknown"].append(pair)
    return {
        "position_disagreement_rate": _flip_rate(outcomes),
        "position_disagreement_ci": bootstrap_interval(outcomes, _flip_rate, settings),
        "n_position_known": sum(outcomes.values()),
        "n_position_ties": outcomes.get("tie", 0),
        "accuracy_orders_agree": accuracy_of(_label_table(split["agree"])),
        "accuracy_orders_disagree": accuracy_of(_label_table(split["flip"])),
    }


def _principle_tables(pairs: Sequence[JoinedPair]) -> tuple[dict[str, Counter], bool]:
    """Per principle, the table of (AI label under that principle, human label); and whether
    any row carried per-principle probabilities (otherwise each pair's own label is used)."""
    tables: dict[str, Counter] = defaultdict(Counter)
    has_probs = False
    for pair in pairs:
        principles = list(pair.ai.get("principles") or [])
        per_p = pair.ai.get("prob_chosen_by_principle")
        use_probs = bool(principles) and per_p is not None and len(per_p) == len(principles)
        has_probs |= use_probs
        for j, principle in enumerate(principles):
            q = per_p[j] if use_probs else pair.ai["prob_chosen"]
            if q is not None:  # a principle that gave no score casts no vote
                tables[principle][label_of(pair.to_first(float(q))), pair.human_label] += 1
    return tables, has_probs


def _per_principle(
    pairs: Sequence[JoinedPair], settings: BootstrapSettings, notes: list[str]
) -> list[PrincipleAgreement]:
    tables, has_probs = _principle_tables(pairs)
    if not has_probs and tables:
        notes.append(
            "no prob_chosen_by_principle column: per-principle agreement uses each pair's label"
        )
    basis = "principle probability" if has_probs else "pair label"
    return [
        PrincipleAgreement(
            principle=principle,
            n=decisive_count(tables[principle]),
            basis=basis,
            **_with_intervals(tables[principle], settings),
        )
        for principle in sorted(tables)
    ]


def _inter_rater(human_by_key: dict[str, list[dict[str, Any]]]) -> InterRater:
    multi = [
        [label_of(prob_first(r)) for r in rows] for rows in human_by_key.values() if len(rows) >= 2
    ]
    kappa, observed = fleiss_kappa(multi)
    return InterRater(
        n_pairs=len(multi),
        n_ratings=sum(len(m) for m in multi),
        observed_agreement=observed,
        fleiss_kappa=kappa,
    )


def compute_agreement(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    n_bins: int = 5,
    names: tuple[str, str] = ("AI dataset", "human dataset"),
    *,
    bootstrap: BootstrapSettings | None = None,
    length_unit: LengthUnit = "chars",
    policy_models: Sequence[str] = (),
) -> AgreementReport:
    """All agreement metrics between an AI-labelled and a human-labelled dataset (`names`
    name them in errors). `policy_models` (the models that wrote the responses) enable the
    self-preference check. Raises `NoSharedPairsError` when no pair carries both labels."""
    settings = bootstrap or BootstrapSettings()
    joined = join_labels(ai_rows, human_rows, names)
    notes = list(joined.notes)
    table = _label_table(joined.pairs)
    ece, bins = _calibration(joined.pairs, n_bins)
    return AgreementReport(
        n_ai_rows=len(joined.ai_rows),
        n_human_rows=len(human_rows),
        n_pairs=len(joined.pairs),
        n_decisive=decisive_count(table),
        n_human_ties=sum(v for (_, h), v in table.items() if h == "tie"),
        n_ai_ties=sum(v for (a, _), v in table.items() if a == "tie"),
        **_with_intervals(table, settings),
        ece=ece,
        calibration=bins,
        **_position(joined, settings),
        per_principle=_per_principle(joined.pairs, settings, notes),
        inter_rater=_inter_rater(joined.human_by_key),
        length_bias=length_bias(joined.pairs, length_unit, settings),
        judge_health=judge_health(map(pair_of_row, joined.ai_rows), length_unit=length_unit),
        self_preference=self_preference(
            (r.get("judge_model") for r in joined.ai_rows), policy_models
        ),
        panel_members=member_accuracy((p.ai, p.human_on_chosen) for p in joined.pairs),
        bootstrap=settings,
        notes=notes,
    )
