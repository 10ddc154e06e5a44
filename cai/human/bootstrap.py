"""Percentile bootstrap intervals for statistics of a table of counts.

Every audit number (accuracy, kappa, flip rate, length-bias rates) depends on the items only
through how many fall in each cell of a small table (e.g. AI label x human label). Resampling
the items with replacement is then the same as drawing the cell counts from a multinomial with
the observed shares, which is exact and costs one draw per resample whatever the item count.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from pydantic import BaseModel, Field

Table = Mapping[Hashable, int]
Statistic = Callable[[Table], float | None]


class BootstrapSettings(BaseModel):
    n_resamples: int = Field(1000, ge=0, description="0 turns the intervals off")
    seed: int = 0
    confidence: float = Field(0.95, gt=0.0, lt=1.0)


class Interval(BaseModel):
    """A percentile interval; `n_valid` resamples had the statistic defined (e.g. kappa is
    undefined on a resample where one rater used one label only)."""

    low: float
    high: float
    n_valid: int


def bootstrap_interval(
    table: Table, statistic: Statistic, settings: BootstrapSettings
) -> Interval | None:
    """The interval of `statistic` over resamples of the items counted in `table`; None when
    there are no items, no resamples, or no resample where the statistic is defined."""
    import numpy as np

    cells = [cell for cell, count in table.items() if count > 0]
    n = sum(table[cell] for cell in cells)
    if n == 0 or settings.n_resamples == 0:
        return None
    rng = np.random.default_rng(settings.seed)
    shares = np.array([table[cell] for cell in cells], dtype=float) / n
    draws = rng.multinomial(n, shares, size=settings.n_resamples)
    values = sorted(
        v
        for v in (statistic(dict(zip(cells, map(int, row), strict=True))) for row in draws)
        if v is not None
    )
    if not values:
        return None
    cut = int((1.0 - settings.confidence) / 2.0 * (len(values) - 1))
    return Interval(low=values[cut], high=values[len(values) - 1 - cut], n_valid=len(values))
