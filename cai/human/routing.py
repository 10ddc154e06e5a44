"""Spend human effort where the AI judge is least sure.

Each AI row gets an uncertainty score from three signals, each in [0, 1]:
- probability: 1 - 2|prob_chosen - 0.5| (1 at a coin flip, 0 at certainty);
- orders: spread (max - min) of `prob_chosen_by_order`, else 1 when `orders_agree` is false;
- principles: 2 * min(share for, share against) over `prob_chosen_by_principle` (1 at an even split).
The weighted sum ranks the pairs; the top `budget` become labelling items with stable ids
(`item_id` = pair_key), responses shown in a seeded random order so the AI's choice does not
anchor the rater. Answers come back through the table importer, which checks each item_id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cai.errors import InputError
from cai.human.imports import ImportReport, import_human
from cai.human.pairs import check_preference_rows, prompt_messages, response_text, row_key
from cai.records import stable_id
from cai.tables import counted, write_table

ITEM_COLUMNS = ("item_id", "prompt", "response_a", "response_b", "label", "rater_id", "comment")


class RoutingConfig(BaseModel):
    budget: int = Field(ge=1)
    weight_probability: float = Field(1.0, ge=0.0)
    weight_orders: float = Field(1.0, ge=0.0)
    weight_principles: float = Field(1.0, ge=0.0)
    min_score: float = 0.0
    """Pairs scoring below this are never routed, even when the budget allows."""
    seed: int = 0
    """Seeds the display order of the two responses."""


class RoutedPair(BaseModel):
    item_id: str
    score: float
    probability: float
    orders: float
    principles: float


class RoutingReport(BaseModel):
    n_ai_rows: int
    n_candidates: int
    """Distinct pairs not yet labelled by people."""
    n_already_labelled: int
    n_selected: int
    selected: list[RoutedPair]
    out_path: str | None = None


def uncertainty(row: dict[str, Any], config: RoutingConfig) -> RoutedPair:
    """The uncertainty signals of one AI row and their weighted score."""
    p = float(row["prob_chosen"])
    u_prob = 1.0 - 2.0 * abs(p - 0.5)
    orders = [float(x) for x in (row.get("prob_chosen_by_order") or [])]
    if len(orders) >= 2:
        u_orders = max(orders) - min(orders)
    else:
        u_orders = 1.0 if row.get("orders_agree") is False else 0.0
    per_principle = [float(x) for x in (row.get("prob_chosen_by_principle") or [])]
    above = sum(x > 0.5 for x in per_principle)
    below = sum(x < 0.5 for x in per_principle)
    u_principles = 2.0 * min(above, below) / (above + below) if above + below else 0.0
    score = (
        config.weight_probability * u_prob
        + config.weight_orders * u_orders
        + config.weight_principles * u_principles
    )
    return RoutedPair(
        item_id=row_key(row),
        score=score,
        probability=u_prob,
        orders=u_orders,
        principles=u_principles,
    )


def select_uncertain(
    ai_rows: list[dict[str, Any]],
    config: RoutingConfig,
    labelled_keys: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[tuple[RoutedPair, dict[str, Any]]], RoutingReport]:
    """The `budget` most uncertain distinct pairs not in `labelled_keys`, most uncertain first
    (ties broken by item_id, so the choice is reproducible)."""
    check_preference_rows(ai_rows, "AI dataset")
    seen: dict[str, tuple[RoutedPair, dict[str, Any]]] = {}
    already = 0
    for row in ai_rows:
        routed = uncertainty(row, config)
        if routed.item_id in labelled_keys:
            already += 1
            continue
        if routed.item_id not in seen or routed.score > seen[routed.item_id][0].score:
            seen[routed.item_id] = (routed, row)
    ranked = sorted(seen.values(), key=lambda pair: (-pair[0].score, pair[0].item_id))
    chosen = [pair for pair in ranked if pair[0].score >= config.min_score][: config.budget]
    report = RoutingReport(
        n_ai_rows=len(ai_rows),
        n_candidates=len(seen),
        n_already_labelled=already,
        n_selected=len(chosen),
        selected=[routed for routed, _ in chosen],
    )
    return chosen, report


class NothingToRouteError(InputError):
    """No pair is left to route, so a labelling sheet would be empty."""


def _nothing_to_route(report: RoutingReport, config: RoutingConfig, best: float | None):
    if report.n_ai_rows == 0:
        reason, fix = "the AI dataset holds no rows", "Check the --ai path."
    elif report.n_candidates == 0:
        reason = f"every AI row ({report.n_already_labelled}) holds a pair people already labelled"
        fix = "Nothing is left to label; drop --exclude to label pairs again."
    else:
        reason = (
            f"no pair scores at least min_score {config.min_score} (the most uncertain of "
            f"{counted(report.n_candidates, 'pair')} scores {best:.3f})"
        )
        fix = "Lower --min-score."
    return NothingToRouteError(f"nothing to route: {reason}", fix=fix)


def labelling_item(routed: RoutedPair, row: dict[str, Any], seed: int) -> dict[str, Any]:
    """One row of the labelling sheet; the prompt is plain text when it is a single turn."""
    prompt = prompt_messages(row["prompt"])
    a, b = response_text(row["chosen"]), response_text(row["rejected"])
    if int(stable_id(seed, routed.item_id), 16) % 2:
        a, b = b, a
    text = prompt[0]["content"].strip()
    looks_like_json = text.startswith("[") and text.endswith("]")
    shown = prompt[0]["content"] if len(prompt) == 1 and not looks_like_json else prompt
    return {
        "item_id": routed.item_id,
        "prompt": shown,
        "response_a": a,
        "response_b": b,
        "label": "",
        "rater_id": "",
        "comment": "",
    }


def check_sheet_path(path: str | Path) -> Path:
    """A labelling sheet is .jsonl or .csv (people open it in an editor or a spreadsheet)."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise InputError(
            "cannot write a labelling sheet of this type",
            file=path,
            fix="Export a labelling sheet as .jsonl or .csv.",
        )
    return path


def export_for_labelling(
    ai_rows: list[dict[str, Any]],
    out_path: str | Path,
    config: RoutingConfig,
    labelled_rows: list[dict[str, Any]] | None = None,
) -> RoutingReport:
    """Write the most uncertain pairs as a JSONL or CSV labelling sheet; people fill `label`
    with a, b or tie (and `rater_id`), then `import_labels` reads it back."""
    out_path = check_sheet_path(out_path)
    labelled = {row_key(r) for r in labelled_rows or []}
    chosen, report = select_uncertain(ai_rows, config, labelled)
    if not chosen:
        scores = (uncertainty(r, config) for r in ai_rows)
        best = max((s.score for s in scores if s.item_id not in labelled), default=None)
        raise _nothing_to_route(report, config, best)
    items = [labelling_item(routed, row, config.seed) for routed, row in chosen]
    if out_path.suffix.lower() == ".jsonl":
        import json

        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", encoding="utf-8") as handle:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    else:
        write_table(items, out_path, columns=list(ITEM_COLUMNS))
    report.out_path = str(out_path)
    return report


def import_labels(
    path: str | Path, rater_id: str | None = None
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Read a filled labelling sheet back as human preference rows (unfilled items are
    flagged "unlabelled"; an item whose text was edited is an error)."""
    return import_human(path, format="table", rater_id=rater_id)
