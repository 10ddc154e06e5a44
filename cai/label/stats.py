"""What the admin page shows: progress and time per label by rater, inter-rater agreement,
position bias, and (with AI labels at hand) AI-human agreement so far.

Labels are compared in the pair's own terms: a, b or tie ("both bad" counts as a tie; skips
are not labels). Inter-rater agreement uses every pair two or more people labelled (the
overlap set, and every pair when `--per-pair` > 1): Cohen's kappa for each two raters on
the pairs they share, and Fleiss' kappa over all of them (variable number of raters).
Position bias is the share of decisive answers that picked the response shown on the left
(0.5 = none). AI-human agreement compares each human answer with the AI's label of the pair
(a when P(A) > 0.5, b when < 0.5, tie at 0.5): accuracy on pairs where both are decisive,
and Cohen's kappa over all.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from cai.human.agreement import cohen_kappa, fleiss_kappa
from cai.label.store import LabelStore


def label_of(choice: str) -> str | None:
    """a / b / tie from a stored choice; None for a skip."""
    if choice == "skip":
        return None
    return "tie" if choice in ("tie", "both_bad") else choice


def ai_label(p_a: float) -> str:
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else "tie"


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def compute_stats(store: LabelStore, server_ms: list[float] | None = None) -> dict[str, Any]:
    """Everything the admin page shows, as JSON-ready data."""
    counts = store.item_counts()
    assigned = store.assignment_counts()
    settings = store.settings()
    per_rater = {
        rater.rater_id: _rater_row(
            rater.rater_id,
            pending=assigned.get(rater.rater_id, {}).get("pending", 0),
            progress=store.progress(rater.rater_id),
        )
        for rater in store.raters()
    }
    labels = _tally_answers(store.live_answers(), per_rater)
    by_item = labels.by_item
    raters, all_seconds = _finish_raters(per_rater)
    total_left = sum(r["left"] for r in raters)
    total_decisive = sum(r["decisive"] for r in raters)
    full = sum(
        1
        for key, item_labels in by_item.items()
        if key not in labels.overlap_items and len(item_labels) >= settings.per_pair
    )
    return {
        "items": counts["items"],
        "overlap_items": counts["overlap"],
        "items_with_ai": counts["with_ai"],
        "per_pair": settings.per_pair,
        "items_labelled": len(by_item),
        "items_done": full,
        "labels": sum(r["labels"] for r in raters),
        "skips": sum(r["skips"] for r in raters),
        "median_seconds": _median(all_seconds),
        "left_share": total_left / total_decisive if total_decisive else None,
        "raters": raters,
        "inter_rater": _inter_rater(by_item, sorted(per_rater)),
        "ai_human": _ai_human(labels.ai_pairs) if counts["with_ai"] else None,
        "server_ms_median": _median(server_ms or []),
        "server_ms_n": len(server_ms or []),
    }


def _rater_row(rater_id: str, pending: int = 0, progress: Any = None) -> dict[str, Any]:
    """A rater's row before their answers are counted."""
    return {
        "rater_id": rater_id,
        "labels": 0,
        "skips": 0,
        "pending": pending,
        "progress": progress,
        "seconds": [],
        "left": 0,
        "decisive": 0,
        "last_at": None,
    }


@dataclass
class _Labels:
    by_item: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    """Item id -> rater id -> a / b / tie."""
    overlap_items: set[str] = field(default_factory=set)
    ai_pairs: list[tuple[str, str]] = field(default_factory=list)
    """(AI label, human label) of every labelled pair the AI judged."""


def _tally_answers(answers: list[dict[str, Any]], per_rater: dict[str, dict]) -> _Labels:
    """Count each answer in its rater's row, and collect the labels by item."""
    out = _Labels()
    for answer in answers:
        stats = per_rater.setdefault(answer["rater_id"], _rater_row(answer["rater_id"]))
        stats["last_at"] = max(stats["last_at"] or 0.0, answer["answered_at"])
        label = label_of(answer["choice"])
        if label is None:
            stats["skips"] += 1
            continue
        stats["labels"] += 1
        if answer["seconds"] is not None:
            stats["seconds"].append(answer["seconds"])
        if label in ("a", "b"):
            stats["decisive"] += 1
            stats["left"] += label == answer["left_side"]
        item = answer["item"]
        out.by_item[item.item_id][answer["rater_id"]] = label
        if answer["overlap"]:
            out.overlap_items.add(item.item_id)
        if item.ai_prob_a is not None:
            out.ai_pairs.append((ai_label(item.ai_prob_a), label))
    return out


def _finish_raters(per_rater: dict[str, dict]) -> tuple[list[dict[str, Any]], list[float]]:
    """The rater rows with median time and left share, and every answer's seconds."""
    raters = []
    all_seconds: list[float] = []
    for stats in per_rater.values():
        seconds = stats.pop("seconds")
        all_seconds += seconds
        stats["median_seconds"] = _median(seconds)
        stats["left_share"] = stats["left"] / stats["decisive"] if stats["decisive"] else None
        raters.append(stats)
    return raters, all_seconds


def _inter_rater(by_item: dict[str, dict[str, str]], rater_ids: list[str]) -> dict[str, Any]:
    """Fleiss' kappa over every pair two or more people labelled; Cohen's for each two raters."""
    shared = {key: labels for key, labels in by_item.items() if len(labels) >= 2}
    fleiss, observed = fleiss_kappa([list(labels.values()) for labels in shared.values()])
    pairwise = []
    for r1, r2 in combinations(rater_ids, 2):
        both = [
            (labels[r1], labels[r2]) for labels in by_item.values() if r1 in labels and r2 in labels
        ]
        if both:
            x, y = zip(*both, strict=True)
            agree = sum(a == b for a, b in both) / len(both)
            pairwise.append(
                {"raters": [r1, r2], "n": len(both), "agreement": agree,
                 "cohen_kappa": cohen_kappa(list(x), list(y))}
            )  # fmt: skip
    return {
        "n_items": len(shared),
        "observed_agreement": observed,
        "fleiss_kappa": fleiss,
        "pairwise": pairwise,
    }


def _ai_human(ai_pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The AI's label against people's: accuracy where both are decisive, kappa over all."""
    decisive = [(a, h) for a, h in ai_pairs if a != "tie" and h != "tie"]
    return {
        "n": len(ai_pairs),
        "n_decisive": len(decisive),
        "accuracy": sum(a == h for a, h in decisive) / len(decisive) if decisive else None,
        "cohen_kappa": cohen_kappa([a for a, _ in ai_pairs], [h for _, h in ai_pairs])
        if ai_pairs
        else None,
    }
