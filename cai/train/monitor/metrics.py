"""Pure metric functions of the reward-hacking monitor, each checked by hand in the tests."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of `values` against their index 0, 1, ..., n-1 (per check).

    Checks are evenly spaced, so the index is the time axis; 0.0 for fewer than two values.
    """
    n = len(values)
    if n < 2:
        return 0.0
    x_mean = (n - 1) / 2
    y_mean = sum(values) / n
    covariance = sum((i - x_mean) * (y - y_mean) for i, y in enumerate(values))
    variance = sum((i - x_mean) ** 2 for i in range(n))
    return covariance / variance


def words(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters, digits and underscores)."""
    return _WORD.findall(text.lower())


def boilerplate(texts: Sequence[str], n: int = 4) -> tuple[float, str | None]:
    """(share, phrase): the share of responses that contain the most widespread word n-gram.

    Each n-gram counts once per response; the most widespread is the one found in the most
    responses (ties: the alphabetically first). A phrase in only one response is not
    boilerplate, so the share is 0.0 (and the phrase None) unless it is in two or more.
    A policy that learned a stock opening ("as a helpful assistant i ...") drives this to 1.
    """
    if not texts:
        return 0.0, None
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        tokens = words(text)
        counts.update({tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)})
    if not counts:
        return 0.0, None
    phrase, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    if count < 2:
        return 0.0, None
    return count / len(texts), " ".join(phrase)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())


def refusal_rate(texts: Sequence[str], markers: Sequence[str]) -> float:
    """Share of responses containing any refusal marker (case-, apostrophe- and
    whitespace-insensitive substring match); 0.0 for no responses."""
    if not texts:
        return 0.0
    wanted = [_normalise(m) for m in markers if m.strip()]
    hits = sum(any(m in _normalise(t) for m in wanted) for t in texts)
    return hits / len(texts)


def length_ratio(lengths: Sequence[int], reference_lengths: Sequence[int]) -> float | None:
    """Mean response length over the reference's mean length (in tokens); None when the
    reference's responses are all empty."""
    ref = mean(reference_lengths)
    own = mean(lengths)
    if not ref or own is None:
        return None
    return own / ref


def win_rate(probabilities: Sequence[float | None]) -> tuple[float | None, int]:
    """(win rate, pairs judged): the mean debiased P(policy beats reference) over the pairs
    the judge could score (a tie counts half, as the judge's probability says)."""
    judged = [p for p in probabilities if p is not None]
    return mean(judged), len(judged)
