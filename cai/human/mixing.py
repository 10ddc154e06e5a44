"""Combine AI and human preference datasets into one training set.

Rules, in order:
1. Each row's `source` column says where it came from (rows without one take the source of
   the argument they were passed in); it is kept in the output.
2. Dedupe on (prompt, pair) with `pair_key`: among AI rows the one resting on most judgments
   wins; several human ratings of one pair are merged into one row (mean probability, all
   raters named, n_judgments = number of ratings).
3. A human label overrides an AI label on the same pair (the AI row is dropped, and counted;
   so are the overrides where the two disagreed).
4. Then either `human_fraction` (the share of human rows wanted; the larger side is
   down-sampled, nothing is repeated) or per-source `weights` (2.0 repeats each row twice,
   0.5 keeps a seeded half, 0 drops the source).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, Field, model_validator

from cai.errors import InputError
from cai.human.agreement import label_of
from cai.human.pairs import (
    assistant,
    check_preference_rows,
    prob_first,
    response_text,
    row_key,
)

SOURCES = ("ai", "human")


class MixConfig(BaseModel):
    human_fraction: float | None = Field(None, ge=0.0, le=1.0)
    weights: dict[str, float] | None = None
    seed: int = 0
    shuffle: bool = True

    @model_validator(mode="after")
    def _one_rule(self) -> MixConfig:
        if self.human_fraction is not None and self.weights is not None:
            raise ValueError("give either human_fraction or weights, not both")
        for source, weight in (self.weights or {}).items():
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r} in weights (use {SOURCES})")
            if weight < 0:
                raise ValueError(f"weight for {source!r} must be >= 0 (got {weight})")
        return self


class MixReport(BaseModel):
    input: dict[str, int]
    duplicates_removed: dict[str, int]
    human_ratings_merged: int
    """Human rows folded into another rating of the same pair."""
    ai_overridden: int
    ai_conflicts: int
    """Overridden AI rows whose label differed from the human one."""
    after_dedupe: dict[str, int]
    output: dict[str, int]
    n_output: int
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return (
            f"input {self.input}; duplicates removed {self.duplicates_removed}; "
            f"{self.human_ratings_merged} human ratings merged into shared pairs; "
            f"{self.ai_overridden} AI rows overridden by human labels "
            f"({self.ai_conflicts} disagreed); after dedupe {self.after_dedupe}; "
            f"output {self.output} = {self.n_output} rows"
            + "".join(f"\nnote: {note}" for note in self.notes)
        )


def merge_ratings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several human ratings of the same pair: the mean probability decides."""
    if len(rows) == 1:
        return dict(rows[0])
    mean_first = sum(prob_first(r) for r in rows) / len(rows)
    texts = sorted([response_text(rows[0]["chosen"]), response_text(rows[0]["rejected"])])
    first_wins = mean_first >= 0.5
    merged = dict(rows[0])
    merged["chosen"] = assistant(texts[0] if first_wins else texts[1])
    merged["rejected"] = assistant(texts[1] if first_wins else texts[0])
    merged["prob_chosen"] = mean_first if first_wins else 1.0 - mean_first
    merged["n_judgments"] = sum(int(r.get("n_judgments") or 1) for r in rows)
    raters = sorted({str(r["rater_id"]) for r in rows if r.get("rater_id")})
    merged["rater_id"] = ",".join(raters) or None
    return merged


def _sample(rows: list[dict[str, Any]], k: int, rng: random.Random) -> list[dict[str, Any]]:
    """k rows chosen at random, kept in their original order."""
    keep = sorted(rng.sample(range(len(rows)), k))
    return [rows[i] for i in keep]


def _by_fraction(
    ai: list[dict[str, Any]],
    human: list[dict[str, Any]],
    fraction: float,
    rng: random.Random,
    notes: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n_ai, n_h = len(ai), len(human)
    if fraction == 0.0:
        return ai, []
    if fraction == 1.0:
        return [], human
    if n_h == 0 or n_ai == 0:
        notes.append(
            f"human_fraction {fraction} cannot be met with {n_h} human and {n_ai} AI rows: "
            "all rows kept"
        )
        return ai, human
    if n_h / (n_h + n_ai) > fraction:
        return ai, _sample(human, int(fraction * n_ai / (1.0 - fraction)), rng)
    return _sample(ai, min(n_ai, int(n_h * (1.0 - fraction) / fraction)), rng), human


def _by_weight(
    rows: list[dict[str, Any]], weight: float, rng: random.Random
) -> list[dict[str, Any]]:
    whole, part = int(weight), weight - int(weight)
    out = [row for row in rows for _ in range(whole)]
    return out + _sample(rows, round(part * len(rows)), rng)


class NothingToMixError(InputError):
    """The mix would hold no rows."""


def _by_source(
    datasets: list[tuple[str, str, list[dict[str, Any]]]],
) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by their `source` (default: the dataset's), each with a fresh pair_id."""
    by_source: dict[str, list[dict[str, Any]]] = {"ai": [], "human": []}
    for default, name, rows in datasets:
        for number, row in enumerate(rows, 1):
            source = row.get("source") or default
            if source not in SOURCES:
                raise InputError(
                    f"unknown source {source!r}",
                    file=name,
                    row=number,
                    key="source",
                    fix="A row's source must be 'ai' or 'human' (or empty).",
                )
            by_source[source].append({**row, "source": source, "pair_id": row_key(row)})
    return by_source


def mix(
    ai_rows: list[dict[str, Any]],
    human_rows: list[dict[str, Any]],
    config: MixConfig | None = None,
    names: tuple[str, str] = ("AI dataset", "human dataset"),
) -> tuple[list[dict[str, Any]], MixReport]:
    """The mixed rows (each with `source` and a recomputed `pair_id`) and what happened
    (`names` name the datasets in errors). A mix with no rows is a `NothingToMixError`."""
    config = config or MixConfig()
    check_preference_rows(ai_rows, names[0])
    check_preference_rows(human_rows, names[1])
    rng = random.Random(config.seed)
    by_source = _by_source([("ai", names[0], ai_rows), ("human", names[1], human_rows)])

    ai_best: dict[str, dict[str, Any]] = {}
    for row in by_source["ai"]:
        kept = ai_best.get(row["pair_id"])
        if kept is None or int(row.get("n_judgments") or 0) > int(kept.get("n_judgments") or 0):
            ai_best[row["pair_id"]] = row
    human_groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in by_source["human"]:
        human_groups[row["pair_id"]].append(row)
    human = [merge_ratings(group) for group in human_groups.values()]

    overridden = [ai_best[k] for k in human_groups if k in ai_best]
    conflicts = sum(
        label_of(prob_first(ai_best[k])) != label_of(prob_first(h))
        for k, h in zip(human_groups, human, strict=True)
        if k in ai_best
    )
    ai = [row for key, row in ai_best.items() if key not in human_groups]
    after = {"ai": len(ai), "human": len(human)}

    notes: list[str] = []
    if config.human_fraction is not None:
        ai, human = _by_fraction(ai, human, config.human_fraction, rng, notes)
    elif config.weights is not None:
        ai = _by_weight(ai, config.weights.get("ai", 1.0), rng)
        human = _by_weight(human, config.weights.get("human", 1.0), rng)
    mixed = human + ai
    if not mixed:
        raise NothingToMixError(
            f"the mix would hold no rows: of {len(ai_rows)} AI and {len(human_rows)} human "
            "rows in, the fraction or weights keep none",
            fix="Check both datasets hold rows and that --weight does not drop every source.",
        )
    if config.shuffle:
        rng.shuffle(mixed)
    report = MixReport(
        input={s: len(by_source[s]) for s in SOURCES},
        duplicates_removed={"ai": len(by_source["ai"]) - len(ai_best), "human": 0},
        human_ratings_merged=len(by_source["human"]) - len(human_groups),
        ai_overridden=len(overridden),
        ai_conflicts=conflicts,
        after_dedupe=after,
        output={"ai": len(ai), "human": len(human)},
        n_output=len(mixed),
        notes=notes,
    )
    return mixed, report
