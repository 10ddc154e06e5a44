"""Normalised text similarity of principles, for finding near-duplicates.

Two principles that differ only in boilerplate ("Which response is more ...?", "Please
choose the assistant response that ...") or in word order say the same thing. Texts are
lower-cased, stripped of punctuation and of the words every comparison shares, then scored
by the larger of token-set overlap (Jaccard, blind to order) and sequence similarity (blind
to a dropped word). Cheap, dependency-free and deterministic, which is all lint and
induction need to group candidates.
"""

from __future__ import annotations

import difflib
import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
BOILERPLATE = frozenset(
    """
    a an the of to and or is are be it its this that these those which what who whom
    response responses reply replies answer answers assistant assistants ai one ones
    better best than please choose select pick prefer compare
    """.split()
)
"""Words nearly every principle shares; they say nothing about what a principle asks.
("more" and "less" are kept: they set a principle's direction.)"""
_SAME = {"most": "more", "least": "less", "fewer": "less", "fewest": "less"}


def normalise(text: str) -> list[str]:
    """The content words of `text`, lower-cased, in order."""
    words = (_SAME.get(w, w) for w in _WORD.findall(text.lower()))
    return [w for w in words if w not in BOILERPLATE]


def similarity(a: str, b: str) -> float:
    """Similarity in [0, 1] of two principle texts after normalisation (1 = same words)."""
    x, y = normalise(a), normalise(b)
    if not x and not y:
        return 1.0 if a.strip().lower() == b.strip().lower() else 0.0
    if not x or not y:
        return 0.0
    jaccard = len(set(x) & set(y)) / len(set(x) | set(y))
    sequence = difflib.SequenceMatcher(None, x, y, autojunk=False).ratio()
    return max(jaccard, sequence)


def cluster(texts: list[str], threshold: float) -> list[list[int]]:
    """Greedy single-pass groups of indices whose text is at least `threshold` similar to the
    group's first member; groups and members keep input order (deterministic)."""
    groups: list[list[int]] = []
    for index, text in enumerate(texts):
        for group in groups:
            if similarity(texts[group[0]], text) >= threshold:
                group.append(index)
                break
        else:
            groups.append([index])
    return groups
