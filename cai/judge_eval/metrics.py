"""The numbers of one grid cell on one benchmark: accuracy with bootstrap intervals per
subset and overall, the benchmark's own score, flip rate, tie rate, length bias, the
per-principle view, and what the judging cost.

Intervals are percentile bootstraps over the benchmark's items (`cai.human.bootstrap`),
so an item with several comparisons (best-of-4, RM-Bench's 9 cells) is resampled whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from cai.constitution_tools.votes import analyse, collect_votes
from cai.human.bootstrap import BootstrapSettings, Interval, bootstrap_interval
from cai.human.joined import JoinedPair
from cai.human.length_bias import LengthBias, length_bias
from cai.judge.judged import JudgedSample
from cai.judge_eval.items import Benchmark, Malformed
from cai.judge_eval.run import CellRun
from cai.judge_eval.scoring import (
    REWARDBENCH_COUNTS,
    ItemResult,
    Outcome,
    rewardbench_sections,
    style_split,
    ties_score,
)
from cai.records import pair_key


class SubsetScore(BaseModel):
    subset: str
    items: int
    scored: int
    failed: int
    accuracy: float | None
    accuracy_ci: Interval | None = None
    score: float | None = None
    """The benchmark's own number for this subset (Ties: its formula; else the accuracy)."""
    with_ties: float | None = None
    """Votes: agreement counting ties (3-way)."""
    hard: float | None = None
    normal: float | None = None
    easy: float | None = None


class PrincipleRow(BaseModel):
    principle: str
    pairs: int
    decisive_pairs: int
    right: float | None
    """Share of its decisive votes on the benchmark's side."""
    moves: int
    """Pairs whose label changes when this principle is left out."""


class BenchmarkScore(BaseModel):
    benchmark: str
    format: str
    source: str
    rows_read: int
    malformed: int
    malformed_examples: list[Malformed] = Field(default_factory=list)
    rows_sampled_out: int = 0
    overall: SubsetScore
    subsets: list[SubsetScore]
    score: float | None
    """The benchmark's headline number, counted its own way (see `score_rule`)."""
    score_rule: str
    sections: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    comparisons: int = 0
    comparisons_failed: int = 0
    flip_rate: float | None = None
    flip_ci: Interval | None = None
    orders_known: int = 0
    tie_rate: float | None = None
    length_bias: LengthBias | None = None
    principles: list[PrincipleRow] = Field(default_factory=list)
    run: CellRun | None = None
    pairs_per_second: float | None = None


def _mean_ci(
    values: Sequence[float], settings: BootstrapSettings
) -> tuple[float | None, Interval | None]:
    if not values:
        return None, None
    table = Counter(values)

    def mean(t) -> float | None:
        n = sum(t.values())
        return sum(v * c for v, c in t.items()) / n if n else None

    return sum(values) / len(values), bootstrap_interval(table, mean, settings)


def subset_score(
    name: str, results: Sequence[ItemResult], settings: BootstrapSettings
) -> SubsetScore:
    values = [r.value for r in results if r.value is not None]
    accuracy, ci = _mean_ci(values, settings)
    with_ties = [r.with_ties for r in results if r.with_ties is not None]
    out = SubsetScore(
        subset=name,
        items=len(results),
        scored=len(values),
        failed=sum(1 for r in results if r.failed),
        accuracy=accuracy,
        accuracy_ci=ci,
        score=accuracy,
        with_ties=sum(with_ties) / len(with_ties) if with_ties else None,
    )
    if any(r.cells for r in results):
        split = style_split(results)
        out.hard, out.normal, out.easy = split["hard"], split["normal"], split["easy"]
    return out


def _headline(fmt: str, subsets: list[SubsetScore], overall: SubsetScore, ties_note: str | None):
    """(score, rule, sections) for a benchmark, counted its own way."""
    scored = {s.subset: s.score for s in subsets if s.score is not None}
    if fmt == "rewardbench":
        sections = rewardbench_sections(scored)
        if not sections:
            return (
                overall.accuracy,
                "accuracy over all pairs (no subset of RewardBench's sections)",
                {},
            )
        score = sum(sections.values()) / len(sections)
        rule = (
            "mean of the sections present (Chat, Chat Hard, Safety, Reasoning), each the "
            "subset accuracies weighted by RewardBench's example counts"
        )
        return score, rule, sections
    if fmt == "rewardbench2":
        score = sum(scored.values()) / len(scored) if scored else None
        rule = "unweighted mean of the subset scores (best-of-4 accuracy; Ties by its formula)"
        return score, rule + (f"; {ties_note}" if ties_note else ""), {}
    if fmt == "rmbench":
        sections: dict[str, list[float]] = {}
        for s in subsets:
            if s.score is not None:
                sections.setdefault(s.subset.split("-")[0], []).append(s.score)
        means = {k: sum(v) / len(v) for k, v in sections.items()}
        score = sum(means.values()) / len(means) if means else None
        return (
            score,
            "mean over domains (chat, math, code, safety) of the 3x3 style-matrix accuracy",
            means,
        )
    if fmt == "mtbench":
        return overall.accuracy, "agreement with the votes, without ties (both sides decisive)", {}
    return overall.accuracy, "accuracy over all pairs", {}


def _length_pairs(outcomes: list[Outcome], judged: dict[str, JudgedSample]) -> list[JoinedPair]:
    """Each pair comparison as a JoinedPair: the judge's label beside the benchmark's."""
    out = []
    for o in outcomes:
        sample = judged.get(o.sample_id)
        if sample is None or o.judge_says is None or len(sample.responses) != 2:
            continue
        a, b = sample.responses
        p_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[o.judge_says]
        gold_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[o.expected]
        a_first = a <= b
        out.append(
            JoinedPair(
                ai={"chosen": a, "rejected": b, "prob_chosen": p_a},
                human_first=gold_a if a_first else 1.0 - gold_a,
                chosen_is_first=a_first,
            )
        )
    return out


def _principles(outcomes: list[Outcome], judged: dict[str, JudgedSample]) -> list[PrincipleRow]:
    """Which principles vote with the benchmark, from each pair's per-principle judgments."""
    gold: dict[str, list[float]] = {}
    samples = {}
    for o in outcomes:
        sample = judged.get(o.sample_id)
        if sample is None or sample.kind != "pair":
            continue
        samples[o.sample_id] = sample
        a, b = sample.responses
        gold_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[o.expected]
        gold.setdefault(pair_key(sample.prompt, a, b), []).append(
            gold_a if a <= b else 1.0 - gold_a
        )
    votes = collect_votes(samples.values())
    if not votes:
        return []
    human = {k: sum(v) / len(v) for k, v in gold.items()}
    ids = sorted({pid for v in votes for pid in v.principles})
    stats = analyse(votes, ids, human=human).stats
    rows = [
        PrincipleRow(
            principle=s.principle,
            pairs=s.pairs,
            decisive_pairs=s.human_pairs,
            right=s.human_agreement,
            moves=s.moves,
        )
        for s in stats
    ]
    return sorted(rows, key=lambda r: (-(r.right or 0.0), r.principle))


def score_benchmark(
    bench: Benchmark,
    results: list[ItemResult],
    judged: dict[str, JudgedSample],
    method: str,
    settings: BootstrapSettings,
    run: CellRun | None = None,
) -> BenchmarkScore:
    """A benchmark's numbers from its items' results (`cai.judge_eval.scoring.score_item`)."""
    by_subset: dict[str, list[ItemResult]] = {}
    for r in results:
        by_subset.setdefault(r.subset, []).append(r)
    subsets, ties_note, notes = [], None, []
    for name in sorted(by_subset):
        score = subset_score(name, by_subset[name], settings)
        if any(r.scoring == "ties" for r in by_subset[name]):
            score.score, ties_note = ties_score(by_subset[name])
        subsets.append(score)
    overall = subset_score("all", results, settings)
    headline, rule, sections = _headline(bench.format, subsets, overall, ties_note)
    outcomes = [o for r in results for o in r.outcomes]
    decided = [o for o in outcomes if o.judge_says is not None]
    known = [o.orders_agree for o in decided if o.orders_agree is not None]
    flips = Counter(not a for a in known)
    flip_rate = flips[True] / len(known) if known else None
    flip_ci = bootstrap_interval(
        flips, lambda t: t.get(True, 0) / max(1, sum(t.values())), settings
    )
    if method == "verdict":
        notes.append(
            "method verdict: hard labels parsed from the judge's written answers, no log-probs "
            "read; a pair's label is the share of its verdicts naming a response (ties are "
            "common), and answers that name no label are counted as unparseable"
        )
    if bench.format == "rewardbench" and any(s.subset not in REWARDBENCH_COUNTS for s in subsets):
        notes.append("subsets outside RewardBench's four sections are shown but not in its score")
    group_sizes = [len(bench.judged[i.group_id].responses) for i in bench.items if i.group_id]
    comparisons = len(outcomes) + sum(k * (k - 1) // 2 for k in group_sizes)
    lengths = _length_pairs(decided, judged)
    seconds = run.judge_seconds if run is not None else 0.0
    return BenchmarkScore(
        benchmark=bench.name,
        format=bench.format,
        source=bench.source,
        rows_read=bench.rows_read,
        malformed=len(bench.malformed),
        malformed_examples=bench.malformed[:5],
        rows_sampled_out=bench.rows_sampled_out,
        overall=overall,
        subsets=subsets,
        score=headline,
        score_rule=rule,
        sections=sections,
        notes=notes,
        comparisons=comparisons,
        comparisons_failed=sum(1 for o in outcomes if o.credit is None),
        flip_rate=flip_rate,
        flip_ci=flip_ci if known else None,
        orders_known=len(known),
        tie_rate=(sum(1 for o in decided if o.judge_says == "tie") / len(decided))
        if decided
        else None,
        length_bias=length_bias(lengths, settings=settings) if lengths else None,
        principles=_principles(outcomes, judged),
        run=run,
        pairs_per_second=len(bench.judged) / seconds if seconds > 0 else None,
    )
