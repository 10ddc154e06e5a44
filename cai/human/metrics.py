"""The agreement statistics, each on labels or a table of label counts so the bootstrap can
resample them (cai.human.bootstrap).

Labels are "first" / "second" / "tie" (which response of a pair wins, the pair's responses
ordered alphabetically). Ties: accuracy is over decisive pairs only (neither side a tie);
Cohen's kappa counts a tie as a third category, so a tie against a winner is a disagreement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from pydantic import BaseModel

Label = str  # "first" | "second" | "tie"
LabelTable = Mapping[tuple[Label, Label], int]
"""How many items got each (rater 1 label, rater 2 label)."""


def label_of(p: float) -> Label:
    """Hard label from the probability that the first response wins (exactly 0.5 is a tie)."""
    return "first" if p > 0.5 else "second" if p < 0.5 else "tie"


def accuracy_of(table: LabelTable) -> float | None:
    """Share of decisive items (neither label a tie) where both labels agree."""
    decisive = {k: v for k, v in table.items() if "tie" not in k}
    n = sum(decisive.values())
    if not n:
        return None
    return sum(v for (a, b), v in decisive.items() if a == b) / n


def decisive_count(table: LabelTable) -> int:
    return sum(v for k, v in table.items() if "tie" not in k)


def kappa_of(table: LabelTable) -> float | None:
    """Cohen's kappa from a table of label pairs; None when undefined (p_e = 1 or no items)."""
    n = sum(table.values())
    if n == 0:
        return None
    observed = sum(v for (a, b), v in table.items() if a == b) / n
    cx: Counter[Label] = Counter()
    cy: Counter[Label] = Counter()
    for (a, b), v in table.items():
        cx[a] += v
        cy[b] += v
    expected = sum(cx[c] * cy[c] for c in set(cx) | set(cy)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def cohen_kappa(x: list[Label], y: list[Label]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (p_e = 1)."""
    if len(x) != len(y):
        raise ValueError("both raters must label the same items")
    return kappa_of(Counter(zip(x, y, strict=True)))


class CalibrationBin(BaseModel):
    lo: float
    hi: float
    count: int
    mean_confidence: float | None
    mean_outcome: float | None


def calibration_bins(
    confidence: list[float], outcome: list[float], n_bins: int = 5, lo: float = 0.5, hi: float = 1.0
) -> tuple[float | None, list[CalibrationBin]]:
    """Expected calibration error and its bins: ECE = sum_b n_b/N |mean conf_b - mean outcome_b|.
    Bins split [lo, hi] evenly; a value equal to `hi` falls in the last bin."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    width = (hi - lo) / n_bins
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        b = min(n_bins - 1, max(0, int((c - lo) / width + 1e-9)))
        members[b].append(i)
    bins, ece, n = [], 0.0, len(confidence)
    for b, idx in enumerate(members):
        mc = sum(confidence[i] for i in idx) / len(idx) if idx else None
        mo = sum(outcome[i] for i in idx) / len(idx) if idx else None
        if idx:
            ece += len(idx) / n * abs(mc - mo)
        bins.append(
            CalibrationBin(
                lo=lo + b * width,
                hi=lo + (b + 1) * width,
                count=len(idx),
                mean_confidence=mc,
                mean_outcome=mo,
            )
        )
    return (ece if n else None), bins


def fleiss_kappa(items: list[list[Label]]) -> tuple[float | None, float | None]:
    """(Fleiss' kappa, mean observed agreement) over items rated by two or more raters each
    (the usual variable-raters form: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)))."""
    items = [labels for labels in items if len(labels) >= 2]
    if not items:
        return None, None
    per_item, totals, n_total = [], Counter(), 0
    for labels in items:
        counts = Counter(labels)
        n_i = len(labels)
        per_item.append((sum(v * v for v in counts.values()) - n_i) / (n_i * (n_i - 1)))
        totals.update(counts)
        n_total += n_i
    observed = sum(per_item) / len(per_item)
    expected = sum((v / n_total) ** 2 for v in totals.values())
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return kappa, observed
