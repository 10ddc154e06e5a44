"""Reproducible principle sampling, keyed by item.

The random stream is derived from (constitution hash, item key, seed, k, mode) through
SHA-256, not from process state, so the same item gets the same principles in every run,
in every process and after a resume, regardless of the order items are processed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from cai.constitution.models import Constitution, Principle
from cai.errors import InputError


def _rng(constitution: Constitution, key: str, k: int, seed: int, weighted: bool) -> random.Random:
    content_hash = constitution.content_hash or constitution.compute_hash()
    blob = json.dumps([content_hash, str(key), int(seed), int(k), bool(weighted)])
    digest = hashlib.sha256(blob.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def sample_principles(
    constitution: Constitution, key: str, k: int, seed: int, weighted: bool = False
) -> list[Principle]:
    """k distinct principles for the item `key` (all of them, shuffled, when k >= their count).

    Uniform by default; with `weighted=True` each draw (without replacement) is proportional
    to `Principle.weight`, and principles of weight 0 are never drawn.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pool = list(constitution.principles)
    if weighted:
        pool = [p for p in pool if p.weight > 0]
        if not pool:
            raise InputError(
                f"constitution {constitution.name!r} has no principle with weight > 0, so "
                "weighted sampling has nothing to draw; give some principles a positive weight"
            )
    rng = _rng(constitution, key, k, seed, weighted)
    count = min(k, len(pool))
    if not weighted:
        return rng.sample(pool, count)
    # Efraimidis-Spirakis: keep the k largest log(u) / w, i.e. sequential weighted draws.
    keyed = [(math.log(1.0 - rng.random()) / p.weight, i) for i, p in enumerate(pool)]
    keyed.sort(reverse=True)
    return [pool[i] for _, i in keyed[:count]]
