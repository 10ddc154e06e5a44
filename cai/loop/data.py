"""The data of a round: its prompt slice, human overrides, and the mix of rounds it trains on.

Everything here is pure bookkeeping over rows (no model), so each rule is tested by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai.config import ConfigError
from cai.errors import InputError
from cai.human.mixing import MixConfig, mix
from cai.human.pairs import row_key
from cai.human.storage import read_preference_rows
from cai.label.export import answers_to_rows
from cai.label.store import LabelStore
from cai.loop.config import LoopConfig, LoopData
from cai.tables import count_prompts, iter_prompts

#: The columns every training row keeps: one schema whatever rounds and sources are mixed.
TRAIN_COLUMNS = (
    "prompt", "chosen", "rejected", "prompt_id", "pair_id", "prob_chosen", "n_judgments",
    "source", "round",
)  # fmt: skip


def prompt_slice(config: LoopConfig, round_no: int) -> list[dict[str, Any]]:
    """Round r's prompts: rows [(r-1)N, rN) of the pool with per_round N, else the whole pool."""
    from itertools import islice

    source = config.prompts
    records = iter_prompts(source.path, source.column)
    if source.per_round != "same":
        start = (round_no - 1) * source.per_round
        records = islice(records, start, start + source.per_round)
    return [{"prompt_id": r.prompt_id, "prompt": r.prompt} for r in records]


def check_pool(config: LoopConfig) -> int:
    """Every prompt is read once before any work; a pool too small for its slices is refused."""
    source = config.prompts
    total = count_prompts(source.path, source.column)
    if source.per_round != "same" and total < source.per_round * config.rounds:
        raise ConfigError(
            f"the pool holds {total} prompts, fewer than per_round ({source.per_round}) x "
            f"rounds ({config.rounds}) = {source.per_round * config.rounds}",
            file=source.path,
            key="prompts.per_round",
            fix="Add prompts, lower per_round or rounds, or use per_round: same.",
        )
    return total


def round_copies(data: LoopData, round_no: int) -> dict[int, int]:
    """{round k: copies of its rows} in round r's training set.

    all: every round once; window: the last `window` rounds once; decay: weight
    decay**(r - k), rounds under `min_weight` left out, weights as whole copies relative to
    the lightest round kept (decay 0.5 in round 3: {1: 1, 2: 2, 3: 4}).
    """
    rounds = range(1, round_no + 1)
    if data.mix == "all":
        return dict.fromkeys(rounds, 1)
    if data.mix == "window":
        return dict.fromkeys(range(max(1, round_no - data.window + 1), round_no + 1), 1)
    weights = {k: data.decay ** (round_no - k) for k in rounds}
    kept = {k: w for k, w in weights.items() if w >= data.min_weight - 1e-12}
    lightest = min(kept.values())
    return {k: max(1, round(w / lightest)) for k, w in kept.items()}


def read_human_labels(path: str | Path) -> list[dict[str, Any]]:
    """Human preference rows from a `cai label` database or a human-labels file."""
    path = Path(path)
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        store = LabelStore(path, create=False)
        try:
            rows, _skips = answers_to_rows(store.live_answers())
        finally:
            store.close()
        return rows

    return read_preference_rows(path, required=False)


def apply_human_labels(
    ai_rows: list[dict[str, Any]], human_rows: list[dict[str, Any]], round_no: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """This round's rows with `cai mix`'s rules: a human label overrides the AI one.

    Only human labels of pairs this round sampled are used (people label the current
    policy's pairs, routed to them with `cai route` or `cai label`); the others are counted.
    """
    keys = {row_key(row) for row in ai_rows}
    matched = [row for row in human_rows if row_key(row) in keys]
    counts = {"human_labels_used": len(matched), "human_labels_unmatched": 0}
    counts["human_labels_unmatched"] = len(human_rows) - len(matched)
    if not matched or not ai_rows:
        rows = [{**row, "source": row.get("source") or "ai"} for row in ai_rows]
        return [_train_row(row, round_no) for row in rows], {
            **counts,
            "ai_overridden": 0,
            "ai_conflicts": 0,
        }
    mixed, report = mix(ai_rows, matched, MixConfig(shuffle=False))
    counts.update(ai_overridden=report.ai_overridden, ai_conflicts=report.ai_conflicts)
    return [_train_row(row, round_no) for row in mixed], counts


def _train_row(row: dict[str, Any], round_no: int) -> dict[str, Any]:
    out = {key: row.get(key) for key in TRAIN_COLUMNS}
    out["pair_id"] = row_key(row)
    out["source"] = row.get("source") or "ai"
    out["n_judgments"] = int(row.get("n_judgments") or 1)
    out["round"] = round_no
    return out


def mix_rounds(
    round_rows: dict[int, list[dict[str, Any]]], copies: dict[int, int]
) -> list[dict[str, Any]]:
    """The training rows: each kept round's rows `copies[k]` times, oldest round first."""
    out: list[dict[str, Any]] = []
    for k in sorted(copies):
        for _ in range(copies[k]):
            out.extend(round_rows.get(k, []))
    return out


def require_rows(rows: list[dict[str, Any]], round_no: int, where: Path) -> None:
    if not rows:
        raise InputError(
            f"round {round_no} has no preference pairs to train on (the judge's pairs were "
            "all filtered, and earlier rounds add none)",
            file=where,
            fix="See filtered.jsonl there for the reasons; lower preferences.min_confidence, "
            "raise sample.n, or use more prompts per round.",
        )
