"""Published numbers to hold a cell against, and how like-for-like each comparison is.

The anchors are the ones the field quotes for these benchmarks. A cell's number is close to
like-for-like only when it ran the whole benchmark (no --limit), with no malformed rows left
out, and the benchmark is counted the way the anchor was: a run on a sample, a different
split, or a judge reading log-probs where the anchor read generated verdicts is a hint, not a
ranking, and the verdict line says so.
"""

from __future__ import annotations

from pydantic import BaseModel


class Anchor(BaseModel):
    judge: str
    benchmark: str
    """A format name of `cai.judge_eval.formats` (rewardbench2, judgebench, ...)."""
    score: float
    """In [0, 1], as cai reports scores."""
    kind: str
    """reward model | LLM judge | AI labeller."""
    note: str


ANCHORS: tuple[Anchor, ...] = (
    Anchor(
        judge="Skywork-Reward-V2-Llama-3.1-8B",
        benchmark="rewardbench2",
        score=0.841,
        kind="reward model",
        note="a trained scalar reward model scoring each of the 4 answers; cai's judge "
        "compares pairs against a constitution",
    ),
    Anchor(
        judge="Skywork-Reward-V2-Llama-3.1-8B",
        benchmark="judgebench",
        score=0.800,
        kind="reward model",
        note="a trained scalar reward model",
    ),
    Anchor(
        judge="GPT-4o as a judge",
        benchmark="rewardbench2",
        score=0.649,
        kind="LLM judge",
        note="a generative judge rating answers with a prompt, not a constitution",
    ),
    Anchor(
        judge="GPT-4o as a judge",
        benchmark="judgebench",
        score=0.598,
        kind="LLM judge",
        note="JudgeBench's own prompt, verdicts generated in both orders",
    ),
    Anchor(
        judge="RLAIF paper's best AI labeller (PaLM 2 L, CoT, both orders)",
        benchmark="agreement with people",
        score=0.78,
        kind="AI labeller",
        note="agreement with human preference labels on summarisation; the closest cai "
        "benchmarks are HH-RLHF and the MT-Bench human votes, different tasks and raters",
    ),
)

CHANCE = {
    "rewardbench": 0.5,
    "rewardbench2": 0.25,
    "rmbench": 0.5,
    "judgebench": 0.5,
    "mtbench": 0.5,
    "hh": 0.5,
}
"""What a judge that guesses scores (RewardBench 2 best-of-4: 1 in 4)."""


def anchors_for(fmt: str) -> list[Anchor]:
    if fmt in ("hh", "mtbench"):
        return [a for a in ANCHORS if a.benchmark == "agreement with people"]
    return [a for a in ANCHORS if a.benchmark == fmt]


def caveats(fmt: str, sampled: bool, malformed: int, method: str) -> list[str]:
    """Why a comparison with the anchors is not like-for-like (empty: it is close to it)."""
    out = []
    if sampled:
        out.append("a --limit sample, not the whole benchmark")
    if malformed:
        out.append(f"{malformed} malformed row(s) left out")
    if fmt == "rewardbench2":
        out.append(
            "best-of-4 counted as 'chosen beats each rejected head to head', the "
            "pairwise form of RewardBench 2's highest-score rule"
        )
    if fmt in ("hh", "mtbench"):
        out.append("a different task and different raters from the RLAIF paper's")
    if method == "logprob" and fmt in ("judgebench", "rewardbench2"):
        out.append("log-prob labels, where the LLM-judge anchors generated verdicts")
    return out


def verdict(
    fmt: str,
    score: float | None,
    sampled: bool,
    malformed: int,
    method: str,
    interval: tuple[float, float] | None = None,
) -> str:
    """One line: where the score sits between chance and the anchors, and how comparable.

    `interval` is the bootstrap interval of the items' accuracy; when it holds chance, the
    line says the judge is not distinguishable from guessing on these rows.
    """
    if score is None:
        return "no score: nothing was judged"
    chance = CHANCE.get(fmt, 0.5)
    parts = [f"{100 * score:.1f} (chance {100 * chance:.0f})"]
    anchors = anchors_for(fmt)
    for anchor in anchors:
        gap = 100 * (score - anchor.score)
        parts.append(f"{gap:+.1f} points vs {anchor.judge} ({100 * anchor.score:.1f})")
    if not anchors:
        parts.append(
            "no published anchor for this benchmark in cai's table (it has RewardBench 2, "
            "JudgeBench and agreement with people)"
        )
    line = "; ".join(parts)
    holds_chance = interval is not None and interval[0] <= chance <= interval[1]
    if holds_chance:
        line += (
            "; not distinguishable from chance: the accuracy interval "
            f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}] holds {100 * chance:.0f}"
        )
    elif abs(score - chance) <= 0.05:
        line += "; near chance: this judge is not separating right from wrong here"
    why = caveats(fmt, sampled, malformed, method) if anchors else []
    if why:
        line += ". Not like-for-like: " + "; ".join(why)
    return line
