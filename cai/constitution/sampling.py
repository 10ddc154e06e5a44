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
from cai.constitution.usage import usable_principles
from cai.errors import InputError


def _rng(
    constitution: Constitution, key: str, k: int, seed: int, weighted: bool, tier: int | None
) -> random.Random:
    content_hash = constitution.content_hash or constitution.compute_hash()
    parts: list = [content_hash, str(key), int(seed), int(k), bool(weighted)]
    if tier is not None:  # only then, so untiered draws keep the stream they always had
        parts.append(int(tier))
    blob = json.dumps(parts)
    digest = hashlib.sha256(blob.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def sample_principles(
    constitution: Constitution,
    key: str,
    k: int,
    seed: int,
    weighted: bool = False,
    *,
    use: str | None = None,
    tier: int | None = None,
    pool: list[Principle] | None = None,
) -> list[Principle]:
    """k distinct principles for the item `key` (all of them, shuffled, when k >= their count).

    Uniform by default; with `weighted=True` each draw (without replacement) is proportional
    to `Principle.weight`, and principles of weight 0 are never drawn. `use` ("judge",
    "revise", "assess") draws only from the principles that carry what that use needs; `pool`
    draws from the given principles instead, and `tier` names the tier a pool stands for
    (it keys the random stream, so each tier gets its own draw). A constitution whose every
    principle fits the use draws exactly what it drew before uses existed.
    """

    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pool = list(pool) if pool is not None else usable_principles(constitution, use)
    if weighted:
        pool = [p for p in pool if p.weight > 0]
        if not pool:
            raise InputError(
                f"constitution {constitution.name!r} has no principle with weight > 0, so "
                "weighted sampling has nothing to draw; give some principles a positive weight"
            )
    rng = _rng(constitution, key, k, seed, weighted, tier)
    count = min(k, len(pool))
    if not weighted:
        return rng.sample(pool, count)
    # Efraimidis-Spirakis: keep the k largest log(u) / w, i.e. sequential weighted draws.
    keyed = [(math.log(1.0 - rng.random()) / p.weight, i) for i, p in enumerate(pool)]
    keyed.sort(reverse=True)
    return [pool[i] for _, i in keyed[:count]]
