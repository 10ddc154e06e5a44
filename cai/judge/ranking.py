"""Bradley-Terry scores from soft pairwise judgments, for k > 2 responses per prompt.

Every pair is judged in both orders, giving a debiased probability that i beats j. Those
probabilities are soft "wins"; a Bradley-Terry fit turns them into one score per response
so a consistent ranking (best, worst, margins) comes out even when pairs disagree a little.
Pure Python: k is small (at most a few dozen responses per prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """Item `i` beat item `j` with probability `p` (a soft outcome), counted `weight` times."""

    i: int
    j: int
    p: float
    weight: float = 1.0


def bradley_terry(
    k: int,
    comparisons: list[Comparison],
    prior: float = 0.0,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> list[float]:
    """Maximum-likelihood Bradley-Terry log-strengths (mean zero) of `k` items.

    Uses Hunter's MM updates with soft wins: item i's wins are sum_j p_ij * weight. With soft
    outcomes strictly inside (0, 1) and a connected comparison graph the optimum is finite;
    `prior` adds that many pseudo-wins in each direction of every compared pair, which keeps
    scores finite when some item wins everything (p = 1) and shrinks them towards zero.
    Two items with P(0 beats 1) = p get scores differing by exactly log(p / (1 - p)) when
    prior = 0.
    """
    if k < 1:
        raise ValueError("bradley_terry needs at least one item")
    if k == 1:
        return [0.0]
    wins = [0.0] * k
    games: dict[tuple[int, int], float] = {}
    for c in comparisons:
        if not (0 <= c.i < k and 0 <= c.j < k) or c.i == c.j:
            raise ValueError(f"comparison ({c.i}, {c.j}) is not a pair of distinct items < {k}")
        if not 0.0 <= c.p <= 1.0 or c.weight < 0:
            raise ValueError(f"comparison ({c.i}, {c.j}): p={c.p} weight={c.weight} out of range")
        wins[c.i] += c.p * c.weight
        wins[c.j] += (1.0 - c.p) * c.weight
        key = (min(c.i, c.j), max(c.i, c.j))
        games[key] = games.get(key, 0.0) + c.weight
    if prior > 0:
        for key in games:
            games[key] += 2 * prior
            wins[key[0]] += prior
            wins[key[1]] += prior
    strength = [1.0] * k
    for _ in range(max_iter):
        new = []
        for i in range(k):
            denom = 0.0
            for (a, b), n in games.items():
                if i in (a, b):
                    denom += n / (strength[a] + strength[b])
            # An item never compared, or that never wins, keeps a tiny strength instead of 0.
            new.append(max(wins[i], 1e-12) / denom if denom > 0 else 1.0)
        log_mean = sum(math.log(s) for s in new) / k
        new = [s / math.exp(log_mean) for s in new]
        delta = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, strength, strict=True))
        strength = new
        if delta < tol:
            break
    return [math.log(s) for s in strength]


def win_probability(score_i: float, score_j: float) -> float:
    """P(i beats j) under the fitted model."""
    return 1.0 / (1.0 + math.exp(score_j - score_i))
