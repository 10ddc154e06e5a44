"""Length bias: does the judge prefer the longer response more often than people do?

Measured on the same pairs for both: joined pairs whose two responses differ in length and
that both the judge and the people decided (a tie on either side leaves a pair out). Length
is characters or whitespace-separated words; the relative difference of a pair is
(longer - shorter) / longer, from just above 0 (nearly equal) to 1 (one response empty).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from cai.human.bootstrap import BootstrapSettings, Interval, Table, bootstrap_interval
from cai.human.joined import JoinedPair
from cai.human.pairs import response_text
from cai.judge.health import LengthUnit, text_length

DEFAULT_EDGES = (0.0, 0.1, 0.25, 0.5, 1.0)


class LengthBin(BaseModel):
    lo: float
    hi: float
    """Relative length difference in (lo, hi]."""
    n: int
    judge_longer_rate: float | None
    human_longer_rate: float | None


class LengthBias(BaseModel):
    unit: LengthUnit
    n_pairs: int
    """Pairs counted: unequal lengths, decided by both the judge and the people."""
    n_equal_length: int
    n_undecided: int
    """Pairs of unequal length left out because the judge or the people tied."""
    judge_longer_rate: float | None
    judge_longer_ci: Interval | None = None
    human_longer_rate: float | None
    human_longer_ci: Interval | None = None
    bins: list[LengthBin]


def _longer_wins(pair: JoinedPair, unit: LengthUnit) -> tuple[float, bool, bool] | None:
    """(relative difference, judge picked the longer, people picked the longer); None when
    the lengths are equal."""
    chosen = text_length(response_text(pair.ai["chosen"]), unit)
    rejected = text_length(response_text(pair.ai["rejected"]), unit)
    if chosen == rejected:
        return None
    first_longer = (chosen > rejected) == pair.chosen_is_first
    long, short = max(chosen, rejected), min(chosen, rejected)
    return (
        (long - short) / long,
        (pair.ai_label == "first") == first_longer,
        (pair.human_label == "first") == first_longer,
    )


def _rate(table: Table, side: int) -> float | None:
    n = sum(table.values())
    return sum(v for k, v in table.items() if k[side]) / n if n else None


def length_bias(
    pairs: Sequence[JoinedPair],
    unit: LengthUnit = "chars",
    settings: BootstrapSettings | None = None,
    edges: Sequence[float] = DEFAULT_EDGES,
) -> LengthBias:
    """The judge's and the people's share of choosing the longer response, overall with
    bootstrap intervals, and binned by relative length difference."""
    settings = settings or BootstrapSettings()
    table: Counter[tuple[bool, bool]] = Counter()
    by_bin: list[Counter[tuple[bool, bool]]] = [Counter() for _ in edges[1:]]
    equal = undecided = 0
    for pair in pairs:
        seen = _longer_wins(pair, unit)
        if seen is None:
            equal += 1
            continue
        if "tie" in (pair.ai_label, pair.human_label):
            undecided += 1
            continue
        rel, judge, human = seen
        table[judge, human] += 1
        b = next((i for i, hi in enumerate(edges[1:]) if rel <= hi), len(by_bin) - 1)
        by_bin[b][judge, human] += 1
    bins = [
        LengthBin(
            lo=edges[i],
            hi=edges[i + 1],
            n=sum(t.values()),
            judge_longer_rate=_rate(t, 0),
            human_longer_rate=_rate(t, 1),
        )
        for i, t in enumerate(by_bin)
    ]
    return LengthBias(
        unit=unit,
        n_pairs=sum(table.values()),
        n_equal_length=equal,
        n_undecided=undecided,
        judge_longer_rate=_rate(table, 0),
        judge_longer_ci=bootstrap_interval(table, lambda t: _rate(t, 0), settings),
        human_longer_rate=_rate(table, 1),
        human_longer_ci=bootstrap_interval(table, lambda t: _rate(t, 1), settings),
        bins=bins,
    )
