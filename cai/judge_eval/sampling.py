"""`--limit N`: a stratified sample, so a first look covers every subset of a benchmark.

N is split over the subsets in proportion to their sizes (largest remainders), each subset
that can get one gets at least one, and within a subset the rows are taken in an order
fixed by the seed and each row's id (the same rows on every machine and rerun, whatever
order the file lists them in). RewardBench 2's Ties rows of one prompt (its `ref:` and
`tied:` rows) travel together, since its score compares them.
"""

from __future__ import annotations

from collections import defaultdict

from cai.judge_eval.items import BenchItem
from cai.records import stable_id


def _units(items: list[BenchItem]) -> dict[str, list[list[BenchItem]]]:
    """Items grouped into sampling units (Ties rows of one prompt are one unit), by subset."""
    units: dict[str, dict[str, list[BenchItem]]] = defaultdict(dict)
    for item in items:
        key = item.item_id
        if item.scoring == "ties" and item.tie_prompt is not None:
            key = f"ties:{item.tie_prompt}"
        units[item.subset].setdefault(key, []).append(item)
    return {subset: list(by_key.values()) for subset, by_key in units.items()}


def _shares(sizes: dict[str, int], limit: int) -> dict[str, int]:
    total = sum(sizes.values())
    if limit >= total:
        return dict(sizes)
    shares = {s: 0 for s in sizes}
    if limit >= len(sizes):  # every subset gets one before the proportional split
        shares = {s: 1 for s in sizes}
    left = limit - sum(shares.values())
    rest = {s: sizes[s] - shares[s] for s in sizes}
    rest_total = sum(rest.values())
    exact = {s: left * rest[s] / rest_total for s in sizes} if rest_total else {}
    for s, value in exact.items():
        shares[s] += int(value)
    order = sorted(exact, key=lambda s: (-(exact[s] - int(exact[s])), s))
    for s in order[: limit - sum(shares.values())]:
        shares[s] += 1
    return shares


def stratified_sample(items: list[BenchItem], limit: int | None, seed: int = 0) -> list[BenchItem]:
    """At most `limit` rows (sampling units), spread over subsets; all of them when None."""
    if limit is None:
        return items
    units = _units(items)
    shares = _shares({s: len(u) for s, u in units.items()}, limit)
    kept_ids: set[str] = set()
    for subset, subset_units in units.items():
        ranked = sorted(subset_units, key=lambda u: stable_id(seed, subset, u[0].item_id))
        for unit in ranked[: shares[subset]]:
            kept_ids.update(item.item_id for item in unit)
    return [item for item in items if item.item_id in kept_ids]
