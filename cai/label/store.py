"""The labelling database: one SQLite file in WAL mode holding the pairs, the raters, who was
given which pair (and on which side response A was shown), and every answer.

Every write is one durable transaction (`cai.label.db`), so restarting on the same file
resumes each rater at their first unanswered pair. A partial unique index allows one live
(not undone) answer per rater and pair, so two tabs of the same rater cannot both answer a
pair: the second answer is refused (`AnswerConflict("already_answered")`) and the first one
is kept. Undo marks an answer undone (it stays in the table, for the audit trail) and puts
the pair back at the front of the rater's queue.

Each rater has a random token: their personal link.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from cai.errors import CaiError, InputError
from cai.label import assign
from cai.label.db import LabelDb
from cai.label.items import Item, prob_a_from_first

SCREEN_CHOICES = ("left", "right", "tie", "both_bad", "skip")
MAX_REASON = 500
RATER_NAME = re.compile(r"^[\w.@+-]{1,64}$")


class RaterNameError(InputError):
    """A rater name cannot be used."""


class AnswerConflict(CaiError):
    """An answer the store refuses: `kind` is "already_answered", "not_assigned" or
    "bad_choice"; `message` is shown to the rater as is."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):
        return (type(self), (self.kind, self.message))


@dataclass(frozen=True)
class Rater:
    rater_id: str
    token: str
    created_at: float


@dataclass(frozen=True)
class Pending:
    """A pair waiting for a rater's answer, and on which side they see response A."""

    idx: int
    seq: int
    item: Item
    left_side: str
    overlap: bool


def screen_to_choice(screen: str, left_side: str) -> str:
    """A choice as the rater saw it (left / right / ...) in the pair's own terms (a / b / ...)."""
    if screen == "left":
        return left_side
    if screen == "right":
        return "b" if left_side == "a" else "a"
    return screen


def choice_to_screen(choice: str, left_side: str) -> str:
    if choice in ("a", "b"):
        return "left" if choice == left_side else "right"
    return choice


def check_rater_name(name: str) -> str:
    name = name.strip()
    if not RATER_NAME.match(name):
        raise RaterNameError(
            f"rater name {name!r} cannot be used",
            key="NAME",
            fix="Use 1-64 letters, digits, '.', '_', '-', '+' or '@' (no spaces); the name is "
            "the rater_id written to the export.",
        )
    return name


def _item(row: sqlite3.Row) -> Item:
    return Item(
        item_id=row["item_id"],
        prompt=json.loads(row["prompt"]),
        response_a=row["response_a"],
        response_b=row["response_b"],
        principle=row["principle"],
        ai_prob_a=row["ai_prob_a"],
    )


class LabelStore(LabelDb):
    """The pairs, raters, assignments and answers in the labelling database at `path`
    (created with `create=True`, else it must exist)."""

    # ---- items -------------------------------------------------------------------------------
    def add_items(self, items: list[Item], source: str | None = None) -> tuple[int, int]:
        """Add the pairs not in the database yet (the overlap set is drawn among them with
        the current settings); returns (added, already there). AI labels of known pairs are
        updated when the new file carries them."""
        settings = self.settings()
        now = time.time()
        with self.write() as db:
            known = {r[0] for r in db.execute("SELECT item_id FROM items")}
            new = [item for item in items if item.item_id not in known]
            overlap = assign.overlap_ids((i.item_id for i in new), settings.overlap, settings.seed)
            db.executemany(
                "INSERT INTO items(item_id, prompt, response_a, response_b, principle, "
                "ai_prob_a, overlap, source, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        i.item_id,
                        json.dumps(i.prompt, ensure_ascii=False),
                        i.response_a,
                        i.response_b,
                        i.principle,
                        i.ai_prob_a,
                        int(i.item_id in overlap),
                        source,
                        now,
                    )
                    for i in new
                ],
            )
            db.executemany(
                "UPDATE items SET ai_prob_a = ? WHERE item_id = ?",
                [
                    (i.ai_prob_a, i.item_id)
                    for i in items
                    if i.item_id in known and i.ai_prob_a is not None
                ],
            )
        return len(new), len(items) - len(new)

    def set_ai_labels(self, p_first: dict[str, float]) -> int:
        """Attach AI labels ({pair_key: P(alphabetically first response wins)}); returns how
        many pairs of the database got one."""
        matched = 0
        with self.write() as db:
            rows = db.execute("SELECT idx, item_id, response_a, response_b FROM items").fetchall()
            for row in rows:
                p = p_first.get(row["item_id"])
                if p is None:
                    continue
                matched += 1
                db.execute(
                    "UPDATE items SET ai_prob_a = ? WHERE idx = ?",
                    (prob_a_from_first(row["response_a"], row["response_b"], p), row["idx"]),
                )
        return matched

    def item_counts(self) -> dict[str, int]:
        row = (
            self.connection()
            .execute("SELECT COUNT(*), COALESCE(SUM(overlap), 0), COUNT(ai_prob_a) FROM items")
            .fetchone()
        )
        return {"items": row[0], "overlap": row[1], "with_ai": row[2]}

    def items(self) -> list[tuple[int, Item, bool]]:
        rows = self.connection().execute("SELECT * FROM items ORDER BY idx").fetchall()
        return [(row["idx"], _item(row), bool(row["overlap"])) for row in rows]

    # ---- raters ------------------------------------------------------------------------------
    def add_rater(self, name: str) -> tuple[Rater, bool]:
        """The rater called `name`, created (with a new token) when missing."""
        name = check_rater_name(name)
        with self.write() as db:
            row = db.execute("SELECT * FROM raters WHERE rater_id = ?", (name,)).fetchone()
            if row is not None:
                return Rater(row["rater_id"], row["token"], row["created_at"]), False
            rater = Rater(name, secrets.token_urlsafe(18), time.time())
            db.execute(
                "INSERT INTO raters(rater_id, token, created_at) VALUES (?, ?, ?)",
                (rater.rater_id, rater.token, rater.created_at),
            )
        return rater, True

    def raters(self) -> list[Rater]:
        rows = self.connection().execute("SELECT * FROM raters ORDER BY created_at, rater_id")
        return [Rater(r["rater_id"], r["token"], r["created_at"]) for r in rows]

    def rater_by_token(self, token: str) -> Rater | None:
        if not token or len(token) > 200:
            return None
        row = self.connection().execute("SELECT * FROM raters WHERE token = ?", (token,)).fetchone()
        if row is None or not secrets.compare_digest(row["token"], token):
            return None
        return Rater(row["rater_id"], row["token"], row["created_at"])

    # ---- labelling ---------------------------------------------------------------------------
    def _pending(self, db: sqlite3.Connection, rater_id: str) -> list[sqlite3.Row]:
        return db.execute(
            """
            SELECT s.seq, s.left_side, i.* FROM assignments s
            JOIN items i ON i.idx = s.item_idx
            LEFT JOIN answers a
              ON a.rater_id = s.rater_id AND a.item_idx = s.item_idx AND a.undone_at IS NULL
            WHERE s.rater_id = ? AND a.answer_id IS NULL
            ORDER BY s.seq
            """,
            (rater_id,),
        ).fetchall()

    def queue(self, rater_id: str, n: int = 2, now: float | None = None) -> list[Pending]:
        """The rater's next `n` pairs (the first is the one to show), assigning new pairs
        when fewer than `n` are waiting."""
        now = time.time() if now is None else now
        with self.write() as db:
            return self._fill(db, rater_id, n, now)

    def _fill(self, db: sqlite3.Connection, rater_id: str, n: int, now: float) -> list[Pending]:
        """Inside a write transaction: the first `n` waiting pairs, assigning new ones."""
        settings = self.settings()
        stale = now - settings.claim_minutes * 60
        rows = self._pending(db, rater_id)
        while len(rows) < n:
            idx = assign.pick_next(db, rater_id, settings.per_pair, settings.seed, stale)
            if idx is None:
                break
            item_id = db.execute("SELECT item_id FROM items WHERE idx = ?", (idx,)).fetchone()[0]
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM assignments WHERE rater_id = ?",
                (rater_id,),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO assignments(rater_id, item_idx, seq, left_side, assigned_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (rater_id, idx, seq, assign.left_side(settings.seed, rater_id, item_id), now),
            )
            rows = self._pending(db, rater_id)
        return [
            Pending(r["idx"], r["seq"], _item(r), r["left_side"], bool(r["overlap"]))
            for r in rows[:n]
        ]

    def pending(self, rater_id: str, item_id: str) -> Pending:
        """One pair waiting in this rater's queue."""
        rows = [r for r in self._pending(self.connection(), rater_id) if r["item_id"] == item_id]
        if not rows:
            raise KeyError(item_id)
        r = rows[0]
        return Pending(r["idx"], r["seq"], _item(r), r["left_side"], bool(r["overlap"]))

    def answer(
        self,
        rater_id: str,
        item_id: str,
        screen_choice: str,
        reason: str | None = None,
        seconds: float | None = None,
        now: float | None = None,
        refill: int = 0,
    ) -> dict[str, Any]:
        """Commit one answer (`screen_choice`: left / right / tie / both_bad / skip, as the
        rater saw the pair). Raises AnswerConflict when the pair is not this rater's or is
        already answered (the first answer is kept). With `refill`, the rater's next
        `refill` pairs are assigned in the same transaction (one commit) and returned as
        "queue"."""
        if screen_choice not in SCREEN_CHOICES:
            raise AnswerConflict(
                "bad_choice", f"unknown choice {screen_choice!r}; use {', '.join(SCREEN_CHOICES)}"
            )
        now = time.time() if now is None else now
        reason = " ".join((reason or "").split())[:MAX_REASON] or None
        if seconds is not None:
            seconds = min(max(float(seconds), 0.0), 86400.0)
        with self.write() as db:
            row = db.execute(
                "SELECT s.item_idx, s.left_side FROM assignments s JOIN items i "
                "ON i.idx = s.item_idx WHERE s.rater_id = ? AND i.item_id = ?",
                (rater_id, item_id),
            ).fetchone()
            if row is None:
                raise AnswerConflict(
                    "not_assigned", "This pair is not in your queue; reload the page."
                )
            choice = screen_to_choice(screen_choice, row["left_side"])
            try:
                cursor = db.execute(
                    "INSERT INTO answers(rater_id, item_idx, choice, left_side, reason, seconds, "
                    "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rater_id, row["item_idx"], choice, row["left_side"], reason, seconds, now),
                )
            except sqlite3.IntegrityError:
                raise AnswerConflict(
                    "already_answered",
                    "You already answered this pair (in another tab or window); your first "
                    "answer is kept. Showing your next pair.",
                ) from None
            queue = self._fill(db, rater_id, refill, now) if refill else []
        return {
            "answer_id": cursor.lastrowid,
            "item_id": item_id,
            "choice": choice,
            "queue": queue,
        }

    def undo(self, rater_id: str, now: float | None = None) -> dict[str, Any] | None:
        """Undo the rater's last live answer; returns what it was (in screen terms), or None
        when there is nothing to undo. The pair becomes the next one shown."""
        now = time.time() if now is None else now
        with self.write() as db:
            row = db.execute(
                "SELECT a.answer_id, a.choice, a.left_side, a.reason, i.item_id FROM answers a "
                "JOIN items i ON i.idx = a.item_idx "
                "WHERE a.rater_id = ? AND a.undone_at IS NULL "
                "ORDER BY a.answer_id DESC LIMIT 1",
                (rater_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE answers SET undone_at = ? WHERE answer_id = ?", (now, row[0]))
        return {
            "item_id": row["item_id"],
            "choice": choice_to_screen(row["choice"], row["left_side"]),
            "reason": row["reason"] or "",
        }

    def can_undo(self, rater_id: str) -> bool:
        row = (
            self.connection()
            .execute(
                "SELECT 1 FROM answers WHERE rater_id = ? AND undone_at IS NULL LIMIT 1",
                (rater_id,),
            )
            .fetchone()
        )
        return row is not None

    def progress(self, rater_id: str, now: float | None = None) -> dict[str, int]:
        """done: live answers; remaining: waiting pairs plus pairs that may still come."""
        now = time.time() if now is None else now
        settings = self.settings()
        db = self.connection()
        done = db.execute(
            "SELECT COUNT(*) FROM answers WHERE rater_id = ? AND undone_at IS NULL", (rater_id,)
        ).fetchone()[0]
        pending = len(self._pending(db, rater_id))
        overlap, regular = assign.candidates(
            db, rater_id, settings.per_pair, settings.seed, now - settings.claim_minutes * 60
        )
        remaining = pending + len(overlap) + len(regular)
        return {"done": done, "remaining": remaining, "total": done + remaining}

    # ---- reading answers ---------------------------------------------------------------------
    def live_answers(self) -> list[dict[str, Any]]:
        """Every live answer (skips included) with its pair, oldest first."""
        rows = (
            self.connection()
            .execute(
                """
            SELECT a.answer_id, a.rater_id, a.choice, a.left_side, a.reason, a.seconds,
                   a.answered_at, s.seq, i.*
            FROM answers a
            JOIN items i ON i.idx = a.item_idx
            JOIN assignments s ON s.rater_id = a.rater_id AND s.item_idx = a.item_idx
            WHERE a.undone_at IS NULL
            ORDER BY a.answered_at, a.answer_id
            """
            )
            .fetchall()
        )
        return [
            {
                "answer_id": r["answer_id"],
                "rater_id": r["rater_id"],
                "choice": r["choice"],
                "left_side": r["left_side"],
                "reason": r["reason"],
                "seconds": r["seconds"],
                "answered_at": r["answered_at"],
                "overlap": bool(r["overlap"]),
                "item": _item(r),
            }
            for r in rows
        ]

    def assignment_counts(self) -> dict[str, dict[str, int]]:
        """{rater_id: {"assigned": n, "pending": n}}."""
        out: dict[str, dict[str, int]] = {}
        for rater in self.raters():
            assigned = (
                self.connection()
                .execute("SELECT COUNT(*) FROM assignments WHERE rater_id = ?", (rater.rater_id,))
                .fetchone()[0]
            )
            out[rater.rater_id] = {
                "assigned": assigned,
                "pending": len(self._pending(self.connection(), rater.rater_id)),
            }
        return out
