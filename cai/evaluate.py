"""Judged win rate of a policy against a baseline on held-out prompts.

Both models answer the same prompts; the PairwiseJudge compares each pair against the
constitution in both answer orders (so a position-biased judge lands on a tie, not on a
win), and the win rate comes with a percentile bootstrap confidence interval over prompts.
Pairs the judge could not label are counted and listed, never scored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai.backends import BackendSpec
from cai.backends.base import Backend, GenerationParams, Message
from cai.backends.owned import RoleHandover
from cai.constitution import load_constitution
from cai.errors import CaiError
from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
from cai.paths import check_run_paths, refuse_output_onto_input, settings_inputs
from cai.records import stable_id
from cai.tables import iter_prompts
from cai.templates import TemplateSet


class WinRateError(CaiError, ValueError):
    """The win-rate settings or inputs cannot produce a meaningful number."""


# --------------------------------------------------------------------------------------------
# Arithmetic (pure: no model, no torch)
# --------------------------------------------------------------------------------------------


def outcome(prob_policy: float, tie_margin: float = 0.0) -> float:
    """1 = policy wins, 0 = baseline wins, 0.5 = tie (|p - 0.5| <= tie_margin)."""
    if abs(prob_policy - 0.5) <= tie_margin:
        return 0.5
    return 1.0 if prob_policy > 0.5 else 0.0


def bootstrap_interval(
    values: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement)."""
    if not values:
        raise WinRateError("no judged pairs: a confidence interval needs at least one value.")
    if not 0.0 < confidence < 1.0:
        raise WinRateError(f"confidence {confidence} must be strictly between 0 and 1.")
    if n_resamples < 1:
        raise WinRateError("n_resamples must be at least 1.")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_resamples))
    alpha = (1.0 - confidence) / 2.0
    cut = int(alpha * (n_resamples - 1))  # same number of resamples cut from each tail
    low, high = means[cut], means[n_resamples - 1 - cut]
    return low, high


class WinRateSummary(BaseModel):
    """The numbers of one comparison; counts are over prompts."""

    n_prompts: int
    n_judged: int
    n_failed: int
    wins: int
    losses: int
    ties: int
    win_rate: float | None
    """(wins + ties / 2) / judged."""
    win_rate_ci: tuple[float, float] | None
    mean_prob: float | None
    """Mean debiased judge probability that the policy's answer is better (a soft win rate)."""
    mean_prob_ci: tuple[float, float] | None
    orders_disagree: float | None
    """Share of judged pairs where the two answer orders picked different winners."""
    confidence: float
    tie_margin: float


def summarize(
    probs: Sequence[float | None],
    orders_agree: Sequence[bool | None] | None = None,
    tie_margin: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> WinRateSummary:
    """Win/loss/tie counts, win rate and soft win rate with bootstrap intervals.

    `probs[i]` is the judge's probability that the policy beats the baseline on prompt i,
    None where the judge gave no label (counted in n_failed, left out of every rate).
    """
    judged = [p for p in probs if p is not None]
    outcomes = [outcome(p, tie_margin) for p in judged]
    wins = sum(1 for o in outcomes if o == 1.0)
    losses = sum(1 for o in outcomes if o == 0.0)
    ties = len(outcomes) - wins - losses
    agree = [
        a
        for a, p in zip(orders_agree or [], probs, strict=False)
        if a is not None and p is not None
    ]
    if judged:
        win_rate = sum(outcomes) / len(outcomes)
        win_ci = bootstrap_interval(outcomes, n_resamples, confidence, seed)
        mean_prob = sum(judged) / len(judged)
        prob_ci = bootstrap_interval(judged, n_resamples, confidence, seed + 1)
    else:
        win_rate = win_ci = mean_prob = prob_ci = None
    return WinRateSummary(
        n_prompts=len(probs),
        n_judged=len(judged),
        n_failed=len(probs) - len(judged),
        wins=wins,
        losses=losses,
        ties=ties,
        win_rate=win_rate,
        win_rate_ci=win_ci,
        mean_prob=mean_prob,
        mean_prob_ci=prob_ci,
        orders_disagree=(sum(1 for a in agree if not a) / len(agree)) if agree else None,
        confidence=confidence,
        tie_margin=tie_margin,
    )


# --------------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------------


class PairOutcome(BaseModel):
    """One prompt's comparison, kept for audit (written to pairs.jsonl)."""

    prompt_id: str
    prompt: list[Message]
    policy_response: str
    baseline_response: str
    prob_policy: float | None
    per_order: dict[str, float] = Field(default_factory=dict)
    orders_agree: bool | None = None
    principles: list[str] = Field(default_factory=list)
    failures: list[dict[str, Any]] = Field(default_factory=list)


_ONE_ORDER = (
    "the win rate needs both answer orders (judge both_orders=true): small judges prefer "
    "whichever answer comes first, which one order alone would report as a result."
)


def judge_responses(
    judge,
    prompt_ids: Sequence[str],
    prompts: Sequence[list[Message]],
    policy_responses: Sequence[str],
    baseline_responses: Sequence[str],
) -> list[PairOutcome]:
    """Ask the PairwiseJudge (both orders) whether each policy answer beats the baseline's."""
    if not getattr(judge.config, "both_orders", True):
        raise WinRateError(_ONE_ORDER)
    lengths = {len(prompt_ids), len(prompts), len(policy_responses), len(baseline_responses)}
    if len(lengths) != 1:
        raise WinRateError("prompts, policy and baseline responses must be the same length.")
    items = [
        PairToJudge(
            key=stable_id("winrate", pid), conversation=list(conv), response_a=a, response_b=b
        )
        for pid, conv, a, b in zip(
            prompt_ids, prompts, policy_responses, baseline_responses, strict=True
        )
    ]
    judgments = judge.judge_pairs(items)
    out = []
    for pid, conv, a, b, j in zip(
        prompt_ids, prompts, policy_responses, baseline_responses, judgments, strict=True
    ):
        labelled = j.ok and j.prob_a is not None
        out.append(
            PairOutcome(
                prompt_id=pid,
                prompt=list(conv),
                policy_response=a,
                baseline_response=b,
                prob_policy=j.prob_a if labelled else None,
                per_order=dict(j.per_order),
                orders_agree=j.orders_agree,
                principles=list(j.principles),
                failures=[f.model_dump() if hasattr(f, "model_dump") else f for f in j.failures],
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------


class WinRateConfig(BaseModel):
    """`cai eval winrate`: everything that defines one comparison."""

    model_config = ConfigDict(extra="forbid")

    prompts: str
    prompt_column: str | None = None
    limit: int | None = None
    policy: BackendSpec
    """The policy under test (e.g. {kind: vllm, model: runs/dpo})."""
    baseline: BackendSpec
    """The baseline (e.g. the model before training)."""
    judge: BackendSpec
    """The judge; checked when the settings load, before any policy generates."""
    constitution: str = "default"
    templates: str | None = None
    judge_config: dict[str, Any] = Field(default_factory=dict)
    """Extra JudgeConfig fields (principles_per_pair, chain_of_thought, seed, ...)."""
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    seed: int = 0
    tie_margin: float = Field(0.0, ge=0.0, lt=0.5)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    bootstrap_resamples: int = Field(2000, ge=1)
    output_dir: str


class WinRateReport(BaseModel):
    policy: str
    baseline: str
    judge: str
    constitution: str
    constitution_hash: str | None = None
    summary: WinRateSummary


def _generate(backend: Backend, prompts: list[list[Message]], params: GenerationParams):
    from tqdm import tqdm

    texts: list[str] = []
    batch = 32
    for start in tqdm(range(0, len(prompts), batch), desc=f"generate {backend.model_id}"):
        for generation in backend.generate_chat(prompts[start : start + batch], params):
            texts.append(generation.texts[0])
    return texts


def run_win_rate(
    config: WinRateConfig,
    policy: Backend | None = None,
    baseline: Backend | None = None,
    judge_backend: Backend | None = None,
) -> WinRateReport:
    """Generate with both models, judge every pair both ways, write the report files.

    Backends passed in replace the ones the config's specs would build (tests, notebooks).
    """
    check_run_paths(config)
    out = Path(config.output_dir)
    reports = {f"--out's {name}": out / name for name in REPORT_FILES}
    inputs = settings_inputs(config, skip=("output_dir",))
    fix = "Move that input elsewhere, or choose another --out."
    refuse_output_onto_input(reports, inputs, fix=fix)
    # every prompt is read and checked before any model loads
    records = list(iter_prompts(config.prompts, config.prompt_column, config.limit))
    if not records:
        raise WinRateError(
            "no prompts to evaluate on", file=config.prompts, fix="Set limit to at least 1."
        )
    judge_config = JudgeConfig(**{"seed": config.seed, **config.judge_config})
    if not judge_config.both_orders:
        raise WinRateError(_ONE_ORDER)  # before any model is loaded
    constitution = load_constitution(config.constitution)
    templates = TemplateSet(config.templates)

    params = GenerationParams(
        n=1, temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    prompts = [r.prompt for r in records]

    def answers(backend: Backend) -> tuple[list[str], str]:
        return _generate(backend, prompts, params), backend.model_id

    # One model at a time; roles naming the same model and settings share one engine.
    with RoleHandover() as roles:
        policy_texts, policy_id = answers(roles.next(config.policy, policy))
        baseline_texts, baseline_id = answers(roles.next(config.baseline, baseline))
        judge_backend = roles.next(config.judge, judge_backend)
        judge = PairwiseJudge(judge_backend, constitution, templates, judge_config)
        outcomes = judge_responses(
            judge, [r.prompt_id for r in records], prompts, policy_texts, baseline_texts
        )
    summary = summarize(
        [o.prob_policy for o in outcomes],
        [o.orders_agree for o in outcomes],
        tie_margin=config.tie_margin,
        confidence=config.confidence,
        n_resamples=config.bootstrap_resamples,
        seed=config.seed,
    )
    report = WinRateReport(
        policy=policy_id,
        baseline=baseline_id,
        judge=judge_backend.model_id,
        constitution=constitution.name,
        constitution_hash=getattr(constitution, "content_hash", None),
        summary=summary,
    )
    write_report(config.output_dir, report, outcomes, config)
    return report


#: The files `write_report` replaces in the output directory.
REPORT_FILES = ("report.json", "pairs.jsonl", "report.md")


def write_report(
    output_dir: str | Path,
    report: WinRateReport,
    outcomes: Sequence[PairOutcome],
    config: WinRateConfig | None = None,
) -> Path:
    """report.json, report.md and pairs.jsonl (every pair, judged or failed) in output_dir."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = report.model_dump(mode="json")
    if config is not None:
        payload["config"] = config.model_dump(mode="json")
    (out / "report.json").write_text(json.dumps(payload, indent=2) + "\n")
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as handle:
        for item in outcomes:
            handle.write(item.model_dump_json() + "\n")
    (out / "report.md").write_text(render_markdown(report))
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(interval: tuple[float, float] | None) -> str:
    return "n/a" if interval is None else f"[{_pct(interval[0])}, {_pct(interval[1])}]"


def render_markdown(report: WinRateReport) -> str:
    s = report.summary
    level = f"{100 * s.confidence:g}%"
    lines = [
        "# Judged win rate",
        "",
        f"Policy `{report.policy}` against baseline `{report.baseline}`, judged by "
        f"`{report.judge}` with constitution `{report.constitution}` in both answer orders.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| win rate (ties count half) | {_pct(s.win_rate)} |",
        f"| {level} bootstrap interval | {_ci(s.win_rate_ci)} |",
        f"| mean judge probability (soft win rate) | {_pct(s.mean_prob)} |",
        f"| {level} bootstrap interval (soft) | {_ci(s.mean_prob_ci)} |",
        f"| wins / ties / losses | {s.wins} / {s.ties} / {s.losses} |",
        f"| prompts judged / failed / total | {s.n_judged} / {s.n_failed} / {s.n_prompts} |",
        f"| answer orders disagree | {_pct(s.orders_disagree)} |",
        f"| tie margin | {s.tie_margin} |",
        "",
    ]
    if s.n_failed:
        lines += [f"{s.n_failed} pair(s) got no label; see pairs.jsonl for the raw failures.", ""]
    return "\n".join(lines)
