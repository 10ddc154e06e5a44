"""Which pair a rater sees next.

Rules (all deterministic given the seed, so a restarted server assigns exactly as before):

- Overlap set: `round(overlap * n)` pairs (at least one when overlap > 0 and there are two or
  more pairs), the ones with the smallest `stable_id(seed, "overlap", item_id)`. Every rater
  labels every overlap pair, in the same order, so agreement can be measured early on.
- Other pairs go to `per_pair` raters each. A pair counts a rater while their answer is live
  (not undone, not a skip) or while their claim is fresh (served less than `claim_minutes`
  ago and not answered yet); a skip or an abandoned claim frees the slot for someone else.
  The next pair is the one with the fewest such raters, ties broken by a per-rater random
  order (`stable_id(seed, rater_id, item_id)`), so raters working at once do not collide.
- Overlap pairs are spread through a rater's sequence in proportion to their share of all
  pairs (with 10% overlap, about one pair in ten), not front-loaded.
- A rater is never assigned the same pair twice (the assignment table's primary key).
- Left/right: each (rater, pair) shows response A on the left or the right by
  `stable_id(seed, "side", rater_id, item_id)`; the side is stored with the assignment and
  with every answer, so position bias can be measured per rater.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from functools import lru_cache

from cai.records import stable_id


def overlap_ids(item_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The item ids every rater labels."""
    ids = list(item_ids)
    if fraction <= 0 or not ids:
        return set()
    count = round(fraction * len(ids))
    if len(ids) >= 2:
        count = max(count, 1)
    ranked = sorted(ids, key=lambda item_id: _overlap_key(seed, item_id))
    return set(ranked[: min(count, len(ids))])


def left_side(seed: int, rater_id: str, item_id: str) -> str:
    """Which response ("a" or "b") this rater sees on the left for this pair."""
    return "a" if int(stable_id(seed, "side", rater_id, item_id), 16) % 2 == 0 else "b"


@lru_cache(maxsize=500_000)
def _order_key(seed: int, rater_id: str, item_id: str) -> str:
    return stable_id(seed, rater_id, item_id)


@lru_cache(maxsize=200_000)
def _overlap_key(seed: int, item_id: str) -> str:
    return stable_id(seed, "overlap", item_id)


def coverage(conn: sqlite3.Connection, stale_before: float) -> dict[int, int]:
    """{item idx: raters it counts} (see the module docstring)."""
    rows = conn.execute(
        """
        SELECT s.item_idx, COUNT(*) FROM assignments s
        LEFT JOIN answers a
          ON a.rater_id = s.rater_id AND a.item_idx = s.item_idx AND a.undone_at IS NULL
        WHERE (a.answer_id IS NOT NULL AND a.choice != 'skip')
           OR (a.answer_id IS NULL AND s.assigned_at >= ?)
        GROUP BY s.item_idx
        """,
        (stale_before,),
    )
    return dict(rows.fetchall())


def candidates(
    conn: sqlite3.Connection, rater_id: str, per_pair: int, seed: int, stale_before: float
) -> tuple[list[int], list[int]]:
    """(overlap items, other items) this rater may still be given, each in the order they
    would be given."""
    seen = {
        row[0]
        for row in conn.execute("SELECT item_idx FROM assignments WHERE rater_id = ?", (rater_id,))
    }
    items = conn.execute("SELECT idx, item_id, overlap FROM items").fetchall()
    cover = coverage(conn, stale_before)
    overlap = sorted(
        ((_overlap_key(seed, item_id), idx) for idx, item_id, o in items if o and idx not in seen)
    )
    regular = sorted(
        (cover.get(idx, 0), _order_key(seed, rater_id, item_id), idx)
        for idx, item_id, o in items
        if not o and idx not in seen and cover.get(idx, 0) < per_pair
    )
    return [idx for _, idx in overlap], [idx for _, _, idx in regular]


def pick_next(
    conn: sqlite3.Connection, rater_id: str, per_pair: int, seed: int, stale_before: float
) -> int | None:
    """The next item idx for this rater, or None when there is nothing left for them."""
    overlap, regular = candidates(conn, rater_id, per_pair, seed, stale_before)
    if not overlap:
        return regular[0] if regular else None
    if not regular:
        return overlap[0]
    n_items, n_overlap = conn.execute("SELECT COUNT(*), SUM(overlap) FROM items").fetchone()
    share = (n_overlap or 0) / n_items
    assigned, assigned_overlap = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(i.overlap), 0) FROM assignments s "
        "JOIN items i ON i.idx = s.item_idx WHERE s.rater_id = ?",
        (rater_id,),
    ).fetchone()
    if assigned_overlap < math.ceil(share * (assigned + 1) - 1e-9):
        return overlap[0]
    return regular[0]
