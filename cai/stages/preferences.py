"""Judgments -> TRL-ready preference rows, with filters that count what they remove.

Rows are `cai.records.PreferenceRow`: prompt / chosen / rejected in TRL's conversational
format plus provenance and confidence. Every judged prompt ends up either as rows or as a
filtered record with its reason (judge failure, tie, low confidence, order disagreement,
...); nothing is dropped silently. The dataset is written by streaming through a JSONL file,
so memory stays flat however many prompts there are.

Reads the judgments (made by the judge stage, or an earlier run's); writes the dataset
(`preferences/`, `preferences.parquet` or `preferences.jsonl`) with its card, the filtered
pairs (`filtered.jsonl`) and the rows it streams through (`work/rows.jsonl`).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from cai.budget import tokens_report
from cai.config import ConfigError
from cai.jobs import job_fingerprint, job_is_complete
from cai.judge.compare import PairJudgment
from cai.judge.health import JudgeHealth, order_outcome
from cai.judge.judged import JudgedSample, iter_judged
from cai.judge.panel import member_columns
from cai.judge.ranking import win_probability
from cai.ledger import job_tokens
from cai.preference_data import push_to_hub, write_dataset
from cai.records import PreferenceRow, pair_key
from cai.stages.base import Input, Output, Stage, StageContext
from cai.stages.judge import judge_health, panel_fingerprint
from cai.stages.summary import Shown, StageSummary
from cai.tables import DatasetFormat

KwiseMode = Literal["best_vs_worst", "all_pairs"]
TIE_EPSILON = 1e-9


class PreferenceConfig(BaseModel):
    """Which judgments become rows, and how the dataset is written."""

    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="drop pairs with |p - 0.5| below this (ties, p == 0.5, are always dropped)",
    )
    require_orders_agree: bool = Field(
        False, description="drop pairs whose two answer orders prefer different responses"
    )
    kwise: KwiseMode = "best_vs_worst"
    format: DatasetFormat = "save_to_disk"
    """save_to_disk | parquet | jsonl (`disk` is read as save_to_disk)."""
    write_filtered: bool = Field(True, description="also write the filtered pairs with reasons")
    push_to_hub: str | None = Field(None, description="repo id to push the dataset to")
    private: bool = True


class Provenance(BaseModel):
    judge_model: str | None = None
    constitution_name: str | None = None
    constitution_hash: str | None = None


class FilteredPair(BaseModel):
    prompt_id: str
    pair_id: str | None
    reason: str
    prob_a: float | None = None
    detail: str = ""
    failures: list[dict[str, Any]] = Field(default_factory=list)


class PreferenceCounts(BaseModel):
    prompts: int = 0
    rows_written: int = 0
    filtered: dict[str, int] = Field(default_factory=dict)
    judge_failures_by_kind: dict[str, int] = Field(default_factory=dict)
    pairs_judged: int = 0
    pairs_with_both_orders: int = 0
    pairs_orders_disagree: int = 0
    mean_prob_chosen: float | None = None
    policy_models: list[str] = Field(default_factory=list)

    @computed_field
    @property
    def position_disagreement_rate(self) -> float | None:
        if not self.pairs_with_both_orders:
            return None
        return self.pairs_orders_disagree / self.pairs_with_both_orders


def _row(
    judged: JudgedSample,
    chosen: str,
    rejected: str,
    prob_chosen: float,
    provenance: Provenance,
    *,
    pair_key: str,
    n_judgments: int,
    orders_agree: bool | None,
    principles: list[str],
    method: str,
    score_margin: float | None = None,
    judgment: PairJudgment | None = None,
    chosen_is_a: bool = True,
) -> PreferenceRow:
    by_order, by_principle = _chosen_views(judgment, chosen_is_a)
    return PreferenceRow(
        prompt=judged.prompt,
        chosen=[{"role": "assistant", "content": chosen}],
        rejected=[{"role": "assistant", "content": rejected}],
        prompt_id=judged.prompt_id,
        pair_id=pair_key,
        prob_chosen=min(1.0, max(0.5, prob_chosen)),
        n_judgments=n_judgments,
        orders_agree=orders_agree,
        principles=principles,
        judge_model=provenance.judge_model,
        constitution_name=provenance.constitution_name,
        constitution_hash=provenance.constitution_hash,
        source="ai",
        method=method,
        score_margin=score_margin,
        prob_chosen_by_order=by_order,
        prob_chosen_by_principle=by_principle,
        decided_by_tier=(
            judgment.decided_by_tier if judgment is not None and method == "pairwise" else None
        ),
        **member_columns(judgment, chosen_is_a),
    )


def _chosen_views(
    judgment: PairJudgment | None, chosen_is_a: bool
) -> tuple[list[float] | None, list[float | None] | None]:
    """Per-order and per-principle probabilities, turned to read "chosen wins".

    Orders come out as [chosen shown first, chosen shown second], so a position-biased judge
    shows up as a large first value and a small second one.
    """
    if judgment is None:
        return None, None

    def flip(p: float) -> float:
        return p if chosen_is_a else 1.0 - p

    first, second = ("AB", "BA") if chosen_is_a else ("BA", "AB")
    by_order = [flip(judgment.per_order[o]) for o in (first, second) if o in judgment.per_order]
    by_id = {pj.principle: pj.prob_a for pj in judgment.per_principle}
    by_principle = [
        None if by_id.get(pid) is None else flip(by_id[pid]) for pid in judgment.principles
    ]
    return by_order or None, by_principle or None


def _confidence_reason(p: float, orders_agree: bool | None, config: PreferenceConfig) -> str | None:
    if abs(p - 0.5) <= TIE_EPSILON:
        return "tie"
    if abs(p - 0.5) < config.min_confidence:
        return "low_confidence"
    if config.require_orders_agree and orders_agree is False:
        return "orders_disagree"
    return None


def rows_for(
    judged: JudgedSample, config: PreferenceConfig, provenance: Provenance
) -> tuple[list[PreferenceRow], list[FilteredPair]]:
    """The preference rows one judged prompt yields, and what was filtered with why."""
    if judged.kind == "skipped":
        return [], [
            FilteredPair(
                prompt_id=judged.prompt_id, pair_id=None, reason=judged.skip_reason or "skipped"
            )
        ]
    result = judged.pair if judged.kind == "pair" else judged.ranking
    assert result is not None
    value = result.prob_a if judged.kind == "pair" else result.scores  # type: ignore[union-attr]
    if not result.ok or value is None:
        return [], [_failed(judged, result.key, result.failures)]
    if judged.kind == "pair":
        return _pair_rows(judged, config, provenance)
    return _ranking_rows(judged, config, provenance)


def _pair_rows(
    judged: JudgedSample, config: PreferenceConfig, provenance: Provenance
) -> tuple[list[PreferenceRow], list[FilteredPair]]:
    """One pair judged directly: its row, unless it is not confident enough."""
    judgment = judged.pair
    assert judgment is not None and judgment.prob_a is not None
    p = judgment.prob_a
    reason = _confidence_reason(p, judgment.orders_agree, config)
    if reason:
        return [], [
            FilteredPair(prompt_id=judged.prompt_id, pair_id=judgment.key, reason=reason, prob_a=p)
        ]
    a, b = judged.responses
    chosen, rejected = (a, b) if p > 0.5 else (b, a)
    row = _row(
        judged,
        chosen,
        rejected,
        max(p, 1 - p),
        provenance,
        pair_key=judgment.key,
        n_judgments=judgment.n_judgments,
        orders_agree=judgment.orders_agree,
        principles=judgment.principles,
        method="pairwise",
        judgment=judgment,
        chosen_is_a=chosen == a,
    )
    return [row], []


def _ranked_pairs(scores: list[float], kwise: str) -> list[tuple[int, int]]:
    """(winner, loser) index pairs a ranking yields: best vs worst, or every pair."""
    if kwise == "best_vs_worst":
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        worst = min(range(len(scores)), key=lambda i: (scores[i], i))
        return [(best, worst)]
    return [
        (i, j) if scores[i] >= scores[j] else (j, i)
        for i in range(len(scores))
        for j in range(i + 1, len(scores))
    ]


def _ranking_rows(
    judged: JudgedSample, config: PreferenceConfig, provenance: Provenance
) -> tuple[list[PreferenceRow], list[FilteredPair]]:
    """k responses ranked: rows from the fitted scores (`config.kwise`), each filtered alone."""
    ranking = judged.ranking
    assert ranking is not None and ranking.scores is not None
    scores = ranking.scores
    by_pair = {(i, j): judgment for i, j, judgment in ranking.pairs}
    principles = sorted({p for j in by_pair.values() for p in j.principles})
    n_total = sum(j.n_judgments for j in by_pair.values())
    rows, filtered = [], []
    for win, lose in _ranked_pairs(scores, config.kwise):
        direct = by_pair.get((min(win, lose), max(win, lose)))
        agree = direct.orders_agree if direct else None
        p = win_probability(scores[win], scores[lose])
        key = pair_key(judged.prompt, judged.responses[win], judged.responses[lose])
        reason = "tie" if win == lose else _confidence_reason(p, agree, config)
        if reason:
            filtered.append(
                FilteredPair(prompt_id=judged.prompt_id, pair_id=key, reason=reason, prob_a=p)
            )
            continue
        rows.append(
            _row(
                judged,
                judged.responses[win],
                judged.responses[lose],
                p,
                provenance,
                pair_key=key,
                n_judgments=n_total,
                orders_agree=agree,
                principles=principles,
                method=config.kwise,
                score_margin=scores[win] - scores[lose],
                judgment=direct,
                chosen_is_a=win < lose,
            )
        )
    return rows, filtered


def _failed(judged: JudgedSample, key: str, failures: list) -> FilteredPair:
    kinds = sorted({f.kind for f in failures})
    return FilteredPair(
        prompt_id=judged.prompt_id,
        pair_id=key,
        reason="judge_failure",
        detail=", ".join(kinds) or "no principle produced a score",
        failures=[f.model_dump() for f in failures],
    )


def _tally_judgment(counts: PreferenceCounts, judgment) -> None:
    counts.pairs_judged += 1
    for failure in judgment.failures:
        counts.judge_failures_by_kind[failure.kind] = (
            counts.judge_failures_by_kind.get(failure.kind, 0) + 1
        )
    if judgment.ok and judgment.orders_agree is not None:
        counts.pairs_with_both_orders += 1
        # an order at exactly 0.5 is a tie, not a disagreement (cai.judge.health)
        orders = [judgment.per_order[o] for o in ("AB", "BA") if o in judgment.per_order]
        counts.pairs_orders_disagree += order_outcome(orders, judgment.orders_agree) == "flip"


def build_preferences(
    judged: Iterable[JudgedSample],
    config: PreferenceConfig,
    provenance: Provenance,
    rows_path: str | Path,
    filtered_path: str | Path | None = None,
) -> PreferenceCounts:
    """Stream judged prompts into a rows JSONL file (and the filtered pairs' JSONL)."""
    counts = PreferenceCounts()
    reasons: Counter[str] = Counter()
    prob_sum = 0.0
    rows_path = Path(rows_path)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(rows_path.open("w", encoding="utf-8"))
        filtered_handle = None
        if filtered_path is not None:
            filtered_handle = stack.enter_context(Path(filtered_path).open("w", encoding="utf-8"))
        for item in judged:
            counts.prompts += 1
            if item.policy_model not in counts.policy_models:
                counts.policy_models.append(item.policy_model)
            if item.pair is not None:
                _tally_judgment(counts, item.pair)
            if item.ranking is not None:
                for _, _, judgment in item.ranking.pairs:
                    _tally_judgment(counts, judgment)
            rows, filtered = rows_for(item, config, provenance)
            for row in rows:
                out.write(row.model_dump_json() + "\n")
                counts.rows_written += 1
                prob_sum += row.prob_chosen
            for record in filtered:
                reasons[record.reason] += 1
                if filtered_handle is not None:
                    filtered_handle.write(record.model_dump_json() + "\n")
    counts.filtered = dict(sorted(reasons.items()))
    counts.mean_prob_chosen = prob_sum / counts.rows_written if counts.rows_written else None
    return counts


def dataset_card(
    *,
    title: str,
    counts: PreferenceCounts,
    provenance: Provenance,
    details: dict[str, Any],
    health: JudgeHealth | None = None,
) -> str:
    """A dataset card (README.md) that records how the dataset was made (and, given `health`,
    how the judge behaved: see cai.judge.health)."""
    rate = counts.position_disagreement_rate
    lines = [
        "---",
        "tags: [cai, rlaif, preference, constitutional-ai]",
        "---",
        f"# {title}",
        "",
        "AI preference pairs in TRL's conversational preference format (`prompt`, `chosen`, "
        "`rejected`), labeled by a judge model against a constitution with `cai`. "
        "`prob_chosen` is the debiased probability (both answer orders, several principles "
        "averaged) that `chosen` is better than `rejected`.",
        "",
        "## Provenance",
        f"- judge model: `{provenance.judge_model}`",
        f"- constitution: `{provenance.constitution_name}` (sha256 `{provenance.constitution_hash}`)",
        f"- policy model(s) that wrote the responses: {', '.join(f'`{m}`' for m in counts.policy_models) or 'n/a'}",
    ]
    for key, value in details.items():
        lines.append(f"- {key}: `{json.dumps(value, sort_keys=True, default=str)}`")
    lines += [
        "",
        "## Counts",
        f"- prompts judged: {counts.prompts}",
        f"- rows written: {counts.rows_written}",
        f"- filtered: {json.dumps(counts.filtered, sort_keys=True)}",
        f"- judge failures by kind: {json.dumps(counts.judge_failures_by_kind, sort_keys=True)}",
        f"- position disagreement rate: {'n/a' if rate is None else f'{rate:.3f}'}",
        "- mean prob_chosen: "
        + ("n/a" if counts.mean_prob_chosen is None else f"{counts.mean_prob_chosen:.4f}"),
        "",
    ]
    if health is not None:
        lines += ["## Judge health", "", *(f"- {line}" for line in health.lines()), ""]
    return "\n".join(lines)


# ---- the stage -------------------------------------------------------------------------------
class PreferencesSummary(PreferenceCounts, StageSummary):
    dataset: str | None = None
    filtered_file: str | None = None

    def lines(self, shown: Shown) -> list[str]:
        """Position flips and confidence are the judge's: JudgeSummary shows them once."""
        see = f" (see {shown(self.filtered_file)})" if self.filtered_file else ""
        return [
            f"pairs written: {self.rows_written}",
            f"filtered: {self.filtered or 'none'}{see}",
            f"judge failures: {self.judge_failures_by_kind or 'none'}",
        ]


def dataset_path(ctx: StageContext) -> Path:
    fmt = ctx.config.preferences.format
    name = {"save_to_disk": "preferences", "parquet": "preferences.parquet"}
    return ctx.output_dir / name.get(fmt, "preferences.jsonl")


def _judgments_ready(ctx: StageContext) -> None:
    if not job_is_complete(ctx.judgments_dir):
        raise ConfigError(
            f"{ctx.rel(ctx.judgments_dir)} holds no finished judgments",
            key="stages",
            fix="Add the `judge` stage (or run `cai judge`) before `preferences`.",
        )


def _provenance_from_job(judgments_dir: Path) -> dict[str, Any]:
    """Provenance of a finished judging job (when `preferences` runs without `judge`)."""
    fingerprint = job_fingerprint(judgments_dir)
    if fingerprint is None:
        raise ConfigError(f"{judgments_dir} holds no judgments; run the `judge` stage first.")
    return {
        "judge_model": fingerprint.get("judge_model"),
        "constitution_name": fingerprint.get("constitution"),
        "constitution_hash": fingerprint.get("constitution_hash"),
        "templates": fingerprint.get("templates"),
    }


def _card_details(ctx: StageContext, labels: int) -> dict[str, Any]:
    """The card's `inputs`, `tokens` and `panel` entries (tokens of the finished jobs when this
    run judged nothing itself, as when `preferences` runs alone)."""
    inputs: dict[str, Any]
    if ctx.config.prompts is not None and "sample" in ctx.config.stages:
        inputs = ctx.config.prompts.model_dump(mode="json")
        inputs["path"] = ctx.rel(inputs["path"])
    else:
        inputs = {"samples": ctx.rel(ctx.samples_dir)}
    ledger = ctx.run_ledger()
    if not ledger.stages:
        ledger = job_tokens(ctx.judgments_dir).merged(job_tokens(ctx.samples_dir))
    report = tokens_report(ledger, ctx.config.budget, labels)
    out: dict[str, Any] = {
        "inputs": inputs,
        "tokens": report.model_dump(mode="json", exclude={"max_tokens", "unpriced_models"}),
    }
    if ctx.config.judge_backends is not None:
        out["panel"] = panel_fingerprint(ctx)
    return out


def run(ctx: StageContext) -> PreferencesSummary:
    config = ctx.config.preferences
    provenance = ctx.provenance or _provenance_from_job(ctx.judgments_dir)
    prov = Provenance(**{k: provenance.get(k) for k in Provenance.model_fields})
    rows_path = ctx.output_dir / "work" / "rows.jsonl"
    filtered_path = ctx.output_dir / "filtered.jsonl" if config.write_filtered else None
    counts = build_preferences(
        iter_judged(ctx.judgments_dir), config, prov, rows_path, filtered_path
    )
    card = dataset_card(
        title=ctx.config.name,
        counts=counts,
        provenance=prov,
        details={
            "templates": provenance.get("templates"),
            "sampling": ctx.config.sample.model_dump(mode="json"),
            "judge": ctx.config.judge.model_dump(mode="json"),
            "filters": config.model_dump(mode="json", exclude={"push_to_hub", "private"}),
            **_card_details(ctx, counts.rows_written),
        },
        health=judge_health(ctx),
    )
    destination = write_dataset(rows_path, dataset_path(ctx), config.format, card=card)
    if config.push_to_hub:
        push_to_hub(rows_path, config.push_to_hub, card, private=config.private)
    return PreferencesSummary(
        **counts.model_dump(exclude={"position_disagreement_rate"}),
        dataset=ctx.rel(destination),
        filtered_file=ctx.rel(filtered_path) if filtered_path else None,
    )


JUDGMENTS_IN = Input("judgments", made_by="judge", check=_judgments_ready)
STAGE = Stage(
    "preferences",
    (JUDGMENTS_IN,),
    (Output("preferences", dataset_path, key="output_dir", fix="Use another --out."),),
    lambda ctx: None,
    run,
    PreferencesSummary,
)
