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
    answers = store.live_answers()
    counts = store.item_counts()
    assigned = store.assignment_counts()
    settings = store.settings()

    per_rater: dict[str, dict[str, Any]] = {}
    for rater in store.raters():
        per_rater[rater.rater_id] = {
            "rater_id": rater.rater_id,
            "labels": 0,
            "skips": 0,
            "pending": assigned.get(rater.rater_id, {}).get("pending", 0),
            "progress": store.progress(rater.rater_id),
            "seconds": [],
            "left": 0,
            "decisive": 0,
            "last_at": None,
        }
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    overlap_items: set[str] = set()
    ai_pairs: list[tuple[str, str]] = []
    for answer in answers:
        stats = per_rater.setdefault(
            answer["rater_id"],
            {"rater_id": answer["rater_id"], "labels": 0, "skips": 0, "pending": 0,
             "progress": None, "seconds": [], "left": 0, "decisive": 0, "last_at": None},
        )  # fmt: skip
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
        by_item[item.item_id][answer["rater_id"]] = label
        if answer["overlap"]:
            overlap_items.add(item.item_id)
        if item.ai_prob_a is not None:
            ai_pairs.append((ai_label(item.ai_prob_a), label))

    raters = []
    all_seconds: list[float] = []
    total_left = total_decisive = 0
    for stats in per_rater.values():
        seconds = stats.pop("seconds")
        all_seconds += seconds
        total_left += stats["left"]
        total_decisive += stats["decisive"]
        stats["median_seconds"] = _median(seconds)
        stats["left_share"] = stats["left"] / stats["decisive"] if stats["decisive"] else None
        raters.append(stats)

    shared = {key: labels for key, labels in by_item.items() if len(labels) >= 2}
    fleiss, observed = fleiss_kappa([list(labels.values()) for labels in shared.values()])
    pairwise = []
    for r1, r2 in combinations(sorted(per_rater), 2):
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

    ai = None
    if counts["with_ai"]:
        decisive = [(a, h) for a, h in ai_pairs if a != "tie" and h != "tie"]
        ai = {
            "n": len(ai_pairs),
            "n_decisive": len(decisive),
            "accuracy": sum(a == h for a, h in decisive) / len(decisive) if decisive else None,
            "cohen_kappa": cohen_kappa([a for a, _ in ai_pairs], [h for _, h in ai_pairs])
            if ai_pairs
            else None,
        }

    labelled = {key for key in by_item}
    full = sum(
        1
        for key, labels in by_item.items()
        if key not in overlap_items and len(labels) >= settings.per_pair
    )
    return {
        "items": counts["items"],
        "overlap_items": counts["overlap"],
        "items_with_ai": counts["with_ai"],
        "per_pair": settings.per_pair,
        "items_labelled": len(labelled),
        "items_done": full,
        "labels": sum(r["labels"] for r in raters),
        "skips": sum(r["skips"] for r in raters),
        "median_seconds": _median(all_seconds),
        "left_share": total_left / total_decisive if total_decisive else None,
        "raters": raters,
        "inter_rater": {
            "n_items": len(shared),
            "observed_agreement": observed,
            "fleiss_kappa": fleiss,
            "pairwise": pairwise,
        },
        "ai_human": ai,
        "server_ms_median": _median(server_ms or []),
        "server_ms_n": len(server_ms or []),
    }
